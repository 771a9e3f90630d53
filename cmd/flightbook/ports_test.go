package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for the child processes to listen on are taken below the kernel's ephemeral range,
// not from a listener on port 0. A port from that range can be taken, between the check
// here and the child's bind, by any outgoing connection that the tests running in parallel
// open to the databases and NATS, and a listener cannot bind a port that an outgoing
// connection holds. A child then exits with "address already in use" (the likeliest cause
// of TestDevModeRestarts' one failure in CI).
const lowestPort = 10000

var (
	portsMu sync.Mutex
	given   = map[int]bool{} // ports handed out in this test binary, each handed out once
)

func freePort(t *testing.T) int {
	t.Helper()
	top := ephemeralStart()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 0
		if top > lowestPort {
			p = lowestPort + rand.IntN(top-lowestPort)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		p = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !given[p] {
			given[p] = true
			return p
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// ephemeralStart returns the first port of the kernel's range for outgoing connections, or
// 0 when it cannot be read (the picker then falls back to port 0).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

func TestFreePortIsOutsideTheEphemeralRange(t *testing.T) {
	top := ephemeralStart()
	if top <= lowestPort {
		t.Skipf("the ephemeral range starts at %d: no room below it", top)
	}
	seen := map[int]bool{}
	for range 50 {
		p := freePort(t)
		if p < lowestPort || p >= top {
			t.Fatalf("port %d is outside [%d, %d)", p, lowestPort, top)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
