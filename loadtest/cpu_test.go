package loadtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       procTime
		err        bool
	}{
		{"plain", "2217 (postgres) S 1 2217 2217 0 -1 4194560 9353 0 2 0 310 120 0 0 20 0 1 0 2044 226406400 7331", procTime{name: "postgres", ticks: 430, start: 2044}, false},
		{"spaces and parens in the name", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 99 0 0", procTime{name: "a (b) c", ticks: 15, start: 99}, false},
		{"no name", "77 a R 1", procTime{}, true},
		{"short", "77 (x) R 1 2 3", procTime{}, true},
		{"not a number", "77 (x) R 1 77 77 0 -1 0 0 0 0 0 x 8 0 0 20 0 1 0 99 0 0", procTime{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat(tc.line)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCPUSpent(t *testing.T) {
	names := []string{"flightbook", "postgres"}
	before := procTimes{
		10: {name: "flightbook", ticks: 500, start: 1},
		20: {name: "postgres", ticks: 100, start: 2},
		21: {name: "postgres", ticks: 50, start: 3}, // ends during the run: lost
		30: {name: "postgres", ticks: 900, start: 4},
	}
	after := procTimes{
		10: {name: "flightbook", ticks: 800, start: 1}, // 3 s
		20: {name: "postgres", ticks: 150, start: 2},   // 0.5 s
		22: {name: "postgres", ticks: 40, start: 9},    // new: 0.4 s
		30: {name: "postgres", ticks: 20, start: 8},    // pid reused by a new process: 0.2 s
	}
	got := cpuSpent(before, after, names, 100)
	assert.Equal(t, []ProcessCPU{
		{Name: "flightbook", Seconds: 3, MsPerBooking: 30, ProcessesAtEnd: 1},
		{Name: "postgres", Seconds: 1.1, MsPerBooking: 11, ProcessesAtEnd: 3},
	}, roundCPU(got))
}

func roundCPU(in []ProcessCPU) []ProcessCPU {
	for i := range in {
		in[i].Seconds = float64(int(in[i].Seconds*1000+0.5)) / 1000
		in[i].MsPerBooking = float64(int(in[i].MsPerBooking*1000+0.5)) / 1000
	}
	return in
}

func TestReadProcTimes(t *testing.T) {
	root := t.TempDir()
	write := func(pid, line string) {
		require.NoError(t, os.MkdirAll(filepath.Join(root, pid), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, pid, "stat"), []byte(line), 0o644))
	}
	write("10", "10 (flightbook) S 1 10 10 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 7 0 0")
	write("11", "11 (flightbook) S 1 11 11 0 -1 0 0 0 0 0 9 9 0 0 20 0 1 0 8 0 0") // the tool itself
	write("12", "12 (bash) S 1 12 12 0 -1 0 0 0 0 0 9 9 0 0 20 0 1 0 8 0 0")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "self"), 0o755))
	got, err := readProcTimes(root, []string{"flightbook"}, 11)
	require.NoError(t, err)
	assert.Equal(t, procTimes{10: {name: "flightbook", ticks: 10, start: 7}}, got)
}
