package deployments

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions; enough to check what it builds and
// runs, not a full parser (no escape directive, no heredocs).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDockerfile checks what the image is built with and what it runs: no Docker engine here
// can build it.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, "../Dockerfile")

	// The builder's Go is the one go.mod asks for.
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for _, line := range strings.Split(string(goMod), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			goVersion = strings.TrimSpace(v)
		}
	}
	majorMinor := strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	if !slices.Contains(ins, instruction{"ARG", "GO_VERSION=" + majorMinor}) {
		t.Errorf("Dockerfile does not build with Go %s (go.mod: go %s)", majorMinor, goVersion)
	}

	var froms, runs []string
	var last int // index of the final stage's FROM
	for i, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
			last = i
		case "RUN":
			runs = append(runs, in.args)
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:${GO_VERSION}") {
		t.Fatalf("stages %q: want a golang:${GO_VERSION} builder and a runtime stage", froms)
	}
	if got := froms[len(froms)-1]; got != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image %q, want gcr.io/distroless/static-debian12:nonroot", got)
	}
	build := strings.Join(runs, " ")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/flightbook",
		"./deployments/healthcheck", "--mount=type=cache,target=/go/pkg/mod"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build does not use %s", want)
		}
	}

	final := ins[last:]
	for _, want := range []instruction{
		{"COPY", "--from=build /out/flightbook /flightbook"},
		{"COPY", "--from=build /out/healthcheck /healthcheck"},
		{"USER", "65532:65532"},
		{"EXPOSE", "8081 8082"},
		{"ENTRYPOINT", `["/flightbook"]`},
	} {
		if !slices.Contains(final, want) {
			t.Errorf("runtime stage lacks %s %s", want.cmd, want.args)
		}
	}
}
