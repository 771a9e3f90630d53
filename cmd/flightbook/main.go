// Command flightbook runs the flightbook services and their operator tools.
//
//	flightbook dev        run the system in one process on SQLite files and an embedded NATS server
//	flightbook flight     run the flight service (catalogue, search, seat inventory)
//	flightbook token      print a bearer token signed with the configured secret
//	flightbook dlq        list, show, redrive or purge dead-lettered messages
//	flightbook status     both services' readiness, consumer lag, dead letters, outbox backlog
//
// Settings come from FLIGHTBOOK_* environment variables; `flightbook <command> --help` lists
// the ones a command reads.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "flightbook:", err)
		os.Exit(1)
	}
}

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"booking":  {"run the booking service (bookings, payments, the saga, hold expiry) on MySQL/MariaDB", runBooking},
		"dlq":      {"inspect, redrive or purge dead-lettered messages: flightbook dlq --help", runDLQ},
		"dev":      {"run the system in one process on SQLite files and an embedded NATS server, seeding a demo catalogue", runDev},
		"flight":   {"run the flight service (catalogue, search, seat inventory) on PostgreSQL", runFlight},
		"status":   {"show both services' readiness, consumer lag, dead letters and outbox backlog: flightbook status --help", runStatus},
		"token":    {"print a bearer token: flightbook token --user U [--role admin] [--ttl 24h]", runToken},
		"loadtest": {"drive the REST APIs under load, then verify no oversell: flightbook loadtest --help", runLoadtest},
		"replay":   {"read a stream again into a route's handler or to another subject: flightbook replay --help", runReplay},
		"outbox":   {"republish a service's outbox after the broker lost messages: flightbook outbox --help", runOutbox},

		"reconcile": {"compare bookings with the flight service's holds; report and --fix divergences: flightbook reconcile --help", runReconcile},
	}
}

// run is the whole program; main only supplies the process's context, arguments and output.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return flag.ErrHelp
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: flightbook <command> [flags]\n\ncommands:")
	for _, name := range slices.Sorted(maps.Keys(cmds)) {
		fmt.Fprintf(w, "  %-10s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(w, "\nSettings are FLIGHTBOOK_* environment variables; see flightbook <command> --help.")
}

// newLogger returns the JSON logger every command logs with.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
