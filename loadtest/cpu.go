package loadtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ProcessCPU is the CPU time that the local processes of one name (a service, a database
// server) spent during a run: from the start of the load until the verification ended, so it
// includes the work the load left queued. On a machine whose throughput moves with its
// neighbours, CPU per booking moves less, so it compares builds better than bookings/s.
type ProcessCPU struct {
	Name           string  `json:"name"`
	Seconds        float64 `json:"cpu_s"`
	MsPerBooking   float64 `json:"cpu_ms_per_booking"`
	ProcessesAtEnd int     `json:"processes"`
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on every Linux the project
// runs on.
const userHZ = 100

// procTimes is a snapshot of the CPU ticks of every process whose name is one of names.
type procTimes map[int]procTime

type procTime struct {
	name  string
	ticks int64 // utime + stime
	start int64 // starttime, so that a reused pid is not taken for the same process
}

// readProcTimes reads /proc (root, in tests) for the processes named one of names, except the
// process self (the load tool is itself a flightbook process).
func readProcTimes(root string, names []string, self int) (procTimes, error) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	out := procTimes{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, d.Name(), "stat"))
		if err != nil {
			continue // the process ended
		}
		t, err := parseStat(string(b))
		if err != nil {
			return nil, fmt.Errorf("cpu: %s/%d/stat: %w", root, pid, err)
		}
		if slices.Contains(names, t.name) {
			out[pid] = t
		}
	}
	return out, nil
}

// parseStat reads the name, CPU ticks and start time from a /proc/PID/stat line. The name
// stands in parentheses and may itself hold spaces and parentheses, so the fields are counted
// from the last ')'.
func parseStat(line string) (procTime, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procTime{}, errors.New("no (name)")
	}
	f := strings.Fields(line[end+1:])
	// f[0] is field 3 (state); utime, stime and starttime are fields 14, 15 and 22.
	if len(f) < 20 {
		return procTime{}, fmt.Errorf("%d fields after the name, want at least 20", len(f))
	}
	var n [3]int64
	for i, k := range []int{11, 12, 19} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return procTime{}, fmt.Errorf("field %d: %w", k+3, err)
		}
		n[i] = v
	}
	return procTime{name: line[open+1 : end], ticks: n[0] + n[1], start: n[2]}, nil
}

// cpuSpent returns what the processes of each name spent between before and after, in the
// order of names. A process that started in between counts from zero; one that ended in
// between is lost (PostgreSQL backends of connections closed during the run, say).
func cpuSpent(before, after procTimes, names []string, bookings int64) []ProcessCPU {
	out := make([]ProcessCPU, len(names))
	for i, n := range names {
		out[i].Name = n
	}
	for pid, a := range after {
		i := slices.Index(names, a.name)
		ticks := a.ticks
		if b, ok := before[pid]; ok && b.start == a.start {
			ticks -= b.ticks
		}
		out[i].Seconds += float64(ticks) / userHZ
		out[i].ProcessesAtEnd++
	}
	if bookings > 0 {
		for i := range out {
			out[i].MsPerBooking = 1000 * out[i].Seconds / float64(bookings)
		}
	}
	return out
}
