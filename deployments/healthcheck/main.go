// Command healthcheck is the container health probe for docker-compose: it GETs one URL and
// exits 0 when the answer is 200 OK, 1 otherwise.
//
//	healthcheck http://127.0.0.1:8081/readyz
//
// The flightbook image is distroless (no shell, no curl or wget), so a compose healthcheck has
// nothing to run but what the image carries. Kubernetes needs none of this: its httpGet probes
// call /healthz and /readyz from the kubelet.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// timeout bounds one probe. Docker's own healthcheck timeout would kill a hung probe too, but a
// probe that gives up by itself reports why.
const timeout = 3 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run probes the URL in args and returns the process exit code.
func run(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: healthcheck URL")
		return 2
	}
	if err := probe(args[0]); err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	return 0
}

// probe GETs url and reports anything but 200 OK as an error.
func probe(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	// Drain a little of the body so the status line and a short reason reach the log.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
