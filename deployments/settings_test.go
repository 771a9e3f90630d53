package deployments

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// settings builds cmd/flightbook and returns the FLIGHTBOOK_* variables each service reads,
// from its --help (which config.Usage generates from the config structs).
func settings(t *testing.T) map[string]map[string]bool {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the flightbook binary")
	}
	bin := filepath.Join(t.TempDir(), "flightbook")
	build := exec.Command("go", "build", "-o", bin, "./cmd/flightbook")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/flightbook: %v\n%s", err, out)
	}
	known := map[string]map[string]bool{}
	for _, svc := range []string{"flight", "booking"} {
		var out bytes.Buffer
		help := exec.Command(bin, svc, "--help")
		help.Stdout, help.Stderr = &out, &out
		_ = help.Run() // --help exits non-zero (flag.ErrHelp); the listing is what counts
		known[svc] = map[string]bool{}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], "FLIGHTBOOK_") {
				known[svc][f[0]] = true
			}
		}
		if len(known[svc]) == 0 {
			t.Fatalf("flightbook %s --help lists no settings:\n%s", svc, out.String())
		}
	}
	return known
}

// TestSettingsExist checks that every FLIGHTBOOK_* variable docker-compose.yml and the
// Kubernetes overlays set is one the service reads: envconfig ignores unknown variables, so a
// misspelt or renamed one would leave the service on its default without a word.
func TestSettingsExist(t *testing.T) {
	t.Parallel()
	known := settings(t)
	check := func(where, svc, name string) {
		if strings.HasPrefix(name, "FLIGHTBOOK_") && !known[svc][name] {
			t.Errorf("%s sets %s, which flightbook %s does not read", where, name, svc)
		}
	}

	p := loadCompose(t)
	for _, svc := range []string{"flight", "booking"} {
		for name := range service(t, p, svc).Environment {
			check("docker-compose.yml service "+svc, svc, name)
		}
	}

	for _, overlay := range []string{"dev", "prod"} {
		r := render(t, "kubernetes/overlays/"+overlay)
		for _, svc := range []string{"flight", "booking"} {
			d, ok := r.deployments[svc]
			if !ok {
				t.Fatalf("overlay %s: no Deployment %s", overlay, svc)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				where := "overlay " + overlay + " Deployment " + svc
				for _, e := range c.Env {
					check(where, svc, e.Name)
				}
				for _, from := range c.EnvFrom {
					if from.ConfigMapRef == nil {
						continue
					}
					for name := range r.configMaps[from.ConfigMapRef.Name].Data {
						check(where+" (ConfigMap "+from.ConfigMapRef.Name+")", svc, name)
					}
				}
			}
		}
	}
}
