package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/loadtest"
)

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	fs.StringVar(&cfg.FlightURL, "flight-url", "http://127.0.0.1:8081", "base URL of the flight service")
	fs.StringVar(&cfg.BookingURL, "booking-url", "http://127.0.0.1:8082", "base URL of the booking service")
	fs.StringVar(&cfg.Secret, "secret", auth.DevSecret, "HS256 secret the services verify tokens with (FLIGHTBOOK_AUTH_SECRET)")
	fs.StringVar(&cfg.Issuer, "issuer", "flightbook", "iss claim of the tokens")
	fs.StringVar(&cfg.Scenario, "scenario", loadtest.ScenarioHot, "what to run: "+strings.Join(loadtest.Scenarios, ", "))
	fs.IntVar(&cfg.Clients, "clients", 32, "concurrency: operations in flight at once (burst releases all --requests at once)")
	fs.IntVar(&cfg.Requests, "requests", 0, "stop after this many operations (a booking; a whole saga in saga); 0: only --duration (burst: 500)")
	fs.DurationVar(&cfg.Duration, "duration", time.Minute, "stop after this long, whichever of --requests and --duration comes first")
	fs.Float64Var(&cfg.Rate, "rate", 0, "start operations at this many a second (open loop); 0: as fast as the clients go")
	fs.IntVar(&cfg.SeatsPerFlight, "seats-per-flight", 0, "seats of each flight the tool creates (0: 100 for burst, 200 for spread, 1000 otherwise)")
	fs.IntVar(&cfg.Flights, "flights", 0, "flights to spread bookings over in spread, saga and mixed (0: 20 for spread, 10 otherwise)")
	fs.IntVar(&cfg.Wait, "wait", -1, "Prefer: wait=N seconds on bookings, up to 10 (-1: 5 for saga and mixed, 0 otherwise)")
	fs.BoolVar(&cfg.JSON, "json", false, "write the final report as JSON on stdout")
	progress := fs.Bool("progress", false, "print a progress line on stderr every second even when stderr is not a terminal")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow service URLs that are not loopback addresses")
	fs.DurationVar(&cfg.QuietTimeout, "quiet-timeout", 3*time.Minute, "how long to wait after the load for every booking to leave PENDING")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Second, "timeout of one HTTP request, on top of --wait")
	cpu := fs.String("cpu", "", "comma-separated names of local processes (e.g. flightbook,mariadbd,postgres) whose CPU time to report, in all and per booking accepted")
	fs.BoolVar(&cfg.Chaos.Enabled, "chaos", false, "kill a service mid-run with --chaos-kill-cmd, start it with --chaos-start-cmd, then verify")
	fs.StringVar(&cfg.Chaos.KillCmd, "chaos-kill-cmd", "", `shell command that kills a service, e.g. 'kill -9 $(cat booking.pid)'`)
	fs.StringVar(&cfg.Chaos.StartCmd, "chaos-start-cmd", "", "shell command that starts it again and returns (background the service); empty: a supervisor restarts it")
	fs.DurationVar(&cfg.Chaos.At, "chaos-at", 0, "when to kill, from the start of the load (0: a third of --duration)")
	fs.DurationVar(&cfg.Chaos.Down, "chaos-down", 2*time.Second, "how long the service stays down before the start command")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: flightbook loadtest [flags]

Drives the flight and booking services' REST APIs with one scenario, then waits for the system
to be quiet and verifies that no flight was oversold and every booking ended in a final or HELD
state. It creates its own city, airports, airplane and flights through the admin API, so runs
never share seats. Exits non-zero when an invariant is broken.

scenarios:
  hot     every client books 1 seat on one flight
  spread  every client books 1 seat on a random one of --flights flights
  burst   --requests bookings (default 500) released at once on one flight (default 100 seats)
  saga    book (Prefer: wait), wait until HELD, pay, until CONFIRMED; reports each step's latency
  mixed   60% search, 22% book, 15% pay a HELD booking, 3% cancel one; the rest stay HELD to expire

flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("loadtest: unexpected arguments %q", fs.Args())
	}
	if *cpu != "" {
		cfg.CPU = strings.Split(*cpu, ",")
	}
	cfg.Terminal = isTerminal(stderr)
	cfg.Progress = *progress || cfg.Terminal
	_, err := loadtest.Run(ctx, cfg, stdout, stderr)
	return err
}

// isTerminal reports whether w is a character device, so a progress line can be rewritten in
// place instead of filling a log file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
