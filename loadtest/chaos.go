package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// The tool does not own the services it drives, so it cannot restart them itself: chaos is
// two shell commands the user supplies. Typical uses, with services started by hand:
//
//	--chaos-kill-cmd 'kill -9 $(cat booking.pid)'
//	--chaos-start-cmd 'nohup flightbook booking >booking.log 2>&1 & echo $! >booking.pid'
//
// and, to cut the services' NATS connections, the same pair for nats-server. Without a start
// command the tool assumes a supervisor (systemd, Kubernetes, compose) restarts the process,
// and only waits for /healthz. The run's invariants are verified afterwards exactly as in a
// run without chaos; requests that failed while the service was down are retried with their
// Idempotency-Key for up to Config.RetryFor, and asked about again before verification.

// chaos kills a service cfg.Chaos.At into the load, starts it again cfg.Chaos.Down later, and
// waits for both services to answer /healthz. It is skipped when the load ends first.
func (r *runner) chaos(ctx context.Context, start time.Time, loadDone <-chan struct{}) *ChaosReport {
	rep := &ChaosReport{}
	select {
	case <-time.After(time.Until(start.Add(r.cfg.Chaos.At))):
	case <-loadDone:
		rep.Skipped = fmt.Sprintf("the load ended before %s", r.cfg.Chaos.At)
		return rep
	case <-ctx.Done():
		rep.Skipped = "cancelled"
		return rep
	}
	rep.KilledAt = secondsOf(time.Since(start))
	if err := shell(ctx, r.cfg.Chaos.KillCmd); err != nil {
		rep.Errors = append(rep.Errors, "kill: "+err.Error())
	}
	if err := sleep(ctx, r.cfg.Chaos.Down); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	rep.StartedAt = secondsOf(time.Since(start))
	if r.cfg.Chaos.StartCmd != "" {
		if err := shell(ctx, r.cfg.Chaos.StartCmd); err != nil {
			rep.Errors = append(rep.Errors, "start: "+err.Error())
		}
	}
	restarted := time.Now()
	if err := r.awaitHealthy(ctx, 2*time.Minute); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	rep.Recovered = secondsOf(time.Since(restarted))
	return rep
}

// shell runs cmd with sh -c and returns its output in the error when it fails. WaitDelay lets
// a command that starts a service in the background return although the service inherited
// its output.
func shell(ctx context.Context, cmd string) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	c.WaitDelay = time.Second
	err := c.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%q: %w: %s", cmd, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// awaitHealthy polls both services' /healthz until both answer 200.
func (r *runner) awaitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, s := range r.services() {
		for {
			_, err := r.quiet.do(ctx, request{endpoint: "GET /healthz", method: http.MethodGet, url: s.url + pathHealth})
			if err == nil {
				break
			}
			if serr := sleep(ctx, 100*time.Millisecond); serr != nil {
				return fmt.Errorf("%s not healthy after %s: %w", s.name, limit, err)
			}
		}
	}
	return nil
}
