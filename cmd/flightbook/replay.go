package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/replay"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
)

// replayConfig is what flightbook replay reads; --to-consumer also reads the settings of the
// service whose handler it feeds (flightConfig, bookingConfig).
type replayConfig struct {
	// Handlers log every message they apply at info; over a long replay that drowns the
	// progress lines, so the replay logs warnings and errors only unless asked.
	LogLevel string `split_words:"true" default:"warn" desc:"debug, info, warn or error (logs go to stderr)"`
	NATS     natsConfig
}

const replayUsage = `usage: flightbook replay --stream BOOKING|FLIGHT [--from-seq N | --since RFC3339]
                         [--subject S] [--booking ID]
                         (--to-consumer SERVICE/ROUTE | --republish-to SUBJECT) [--dry-run]

Reads a stream again, from its first message or the given point up to the last message it
held when the replay started, with an ordered (ephemeral) consumer: the services' durable
consumers are not touched, and the replay may run while the services do.

  --to-consumer flight/seat-hold   hands each message to that route's handler, built on the
        service's own database from the same FLIGHTBOOK_* variables as the service (see
        flightbook flight --help, flightbook booking --help). Each message keeps its id, so
        one the handler's inbox already holds changes nothing: it is counted as skipped, and
        the handler is not run. Replies the handler queues in the outbox are published by the
        running service's relay. Routes: flight/seat-hold, flight/seat-release,
        flight/seats-confirm, booking/seats-held, booking/seat-hold-rejected,
        booking/seats-released, booking/seats-confirmed.
  --republish-to SUBJECT           publishes a copy of each message to SUBJECT (it must belong
        to a stream), with the original's headers and payload and a Nats-Msg-Id derived from
        the original's, so running the same replay again within the stream's duplicate window
        stores nothing new (those copies are counted as skipped).

Subjects are given as the services name them (booking.saga.seat-hold-requested); the
namespace in FLIGHTBOOK_NATS_NAMESPACE is added. --subject defaults to the route's subject
with --to-consumer, to the whole stream otherwise. A progress line goes to stderr every few
seconds; the summary to stdout. It exits 1 if any message failed.

flags:`

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg                      replayConfig
		stream, since, subject   string
		bookingID, to, republish string
		fromSeq                  uint64
		dryRun                   bool
		timeout, every           time.Duration
	)
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&stream, "stream", "", "the stream to read: BOOKING or FLIGHT (required)")
	fs.Uint64Var(&fromSeq, "from-seq", 0, "start at this stream sequence")
	fs.StringVar(&since, "since", "", "start at the first message stored at or after this time (RFC 3339)")
	fs.StringVar(&subject, "subject", "", "only messages on this subject (wildcards allowed)")
	fs.StringVar(&bookingID, "booking", "", "only messages whose payload is about this booking id")
	fs.StringVar(&to, "to-consumer", "", "hand each message to this route's handler: SERVICE/ROUTE, e.g. flight/seat-hold")
	fs.StringVar(&republish, "republish-to", "", "publish a copy of each message to this subject")
	fs.BoolVar(&dryRun, "dry-run", false, "say what would be done and change nothing")
	fs.DurationVar(&timeout, "timeout", consumer.DefaultAckWait, "how long one handler run or publish may take")
	fs.DurationVar(&every, "progress", replay.DefaultProgressEvery, "how often a progress line goes to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, replayUsage)
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nSettings (environment):")
		_ = config.Usage(stderr, &cfg)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := replay.Options{FromSeq: fromSeq, BookingID: bookingID, DryRun: dryRun, Timeout: timeout,
		Progress: stderr, ProgressEvery: every}
	var base string
	switch strings.ToUpper(stream) {
	case events.StreamBooking, events.StreamFlight:
		base = strings.ToUpper(stream)
	default:
		fs.Usage()
		return fmt.Errorf("replay: --stream %q: give BOOKING or FLIGHT", stream)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("replay: unexpected arguments %q", fs.Args())
	case (to == "") == (republish == ""):
		return errors.New("replay: give one of --to-consumer and --republish-to")
	case fromSeq > 0 && since != "":
		return errors.New("replay: give --from-seq or --since, not both")
	}
	if since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return fmt.Errorf("replay: --since: %w", err)
		}
		opts.Since = t
	}

	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := loggerFor(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	topo := events.Topology{Namespace: cfg.NATS.Namespace}
	opts.Stream = topo.StreamName(base)
	if subject != "" {
		opts.Subject = topo.Subject(subject)
	}
	nc, js, err := connectNATS(ctx, cfg.NATS.URL, "flightbook-replay", log)
	if err != nil {
		return err
	}
	defer func() {
		// As in dlq: closing on purpose is no disconnection to warn about.
		nc.SetDisconnectErrHandler(nil)
		nc.Close()
	}()

	var target replay.Target
	if republish != "" {
		dest := topo.Subject(republish)
		target = replay.Republish(js, dest)
		fmt.Fprintf(stderr, "replay: copying %s (%s) to %s\n", opts.Stream, orAll(opts.Subject), dest)
	} else {
		route, processed, closeDB, err := serviceRoute(ctx, nc, js, to, log)
		if err != nil {
			return err
		}
		defer closeDB()
		switch {
		case route.Stream != opts.Stream:
			return fmt.Errorf("replay: route %s reads stream %s, not %s", to, route.Stream, opts.Stream)
		case opts.Subject == "":
			opts.Subject = route.Subject
		case opts.Subject != route.Subject:
			// A handler understands only the messages of its own subject.
			return fmt.Errorf("replay: route %s handles %s only; drop --subject or give that one", to, route.Subject)
		}
		target = replay.ToHandler(route.Handler, processed)
		fmt.Fprintf(stderr, "replay: feeding %s (%s) to the handler of %s\n", opts.Stream, opts.Subject, to)
	}

	sum, err := replay.Run(ctx, js, opts, target)
	for _, f := range sum.Failures {
		fmt.Fprintf(stdout, "seq %d msg %s on %s: failed: %v\n", f.Seq, f.ID, f.Subject, f.Err)
	}
	if n := sum.Failed - len(sum.Failures); n > 0 {
		fmt.Fprintf(stdout, "... and %d more failures (see the log)\n", n)
	}
	fmt.Fprintln(stdout, sum)
	if err != nil {
		if sum.LastSeq > 0 {
			fmt.Fprintf(stdout, "stopped early; to go on: --from-seq %d\n", sum.LastSeq+1)
		}
		return err
	}
	if sum.Failed > 0 {
		return fmt.Errorf("replay: %d of %d messages failed", sum.Failed, sum.Matched)
	}
	return nil
}

// serviceRoute returns the route named by target ("service/route") as its service registers
// it: the stream and subject it reads, and its live handler built as serveFlight and
// serveBooking build it, on the service's own database (openFlightDB, openBookingDB: the
// server database or the SQLite file), so that a replayed message goes through the same code,
// inbox and outbox as a delivery. processed asks that route's inbox. No relay runs here: the
// running service's relay publishes the replies (it polls).
func serviceRoute(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, target string, log *slog.Logger) (_ consumer.Route, _ replay.Processed, closeDB func(), _ error) {
	service, name, _ := strings.Cut(target, "/")
	fail := func(err error) (consumer.Route, replay.Processed, func(), error) {
		return consumer.Route{}, nil, nil, err
	}
	var (
		router    *consumer.Router
		processed replay.Processed
		err       error
	)
	inboxName := replay.InboxConsumer(service, name)
	switch service {
	case events.ServiceFlight:
		var cfg flightConfig
		if err := config.Load(&cfg); err != nil {
			return fail(err)
		}
		topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/flight"}
		if router, err = consumer.New(nc, js, service, cfg.NATS.Namespace, consumer.Config{}, log); err != nil {
			return fail(err)
		}
		db, err := openFlightDB(ctx, cfg, topo, log)
		if err != nil {
			return fail(fmt.Errorf("replay: flight database: %w", err))
		}
		closeDB = db.close
		db.handlers(nil, log).Register(router)
		processed = db.processed(inboxName)
	case events.ServiceBooking:
		var cfg bookingConfig
		if err := config.Load(&cfg); err != nil {
			return fail(err)
		}
		topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/booking"}
		if router, err = consumer.New(nc, js, service, cfg.NATS.Namespace, consumer.Config{}, log); err != nil {
			return fail(err)
		}
		db, err := openBookingDB(ctx, cfg, topo, log)
		if err != nil {
			return fail(fmt.Errorf("replay: booking database: %w", err))
		}
		closeDB = func() { _ = db.sql.Close() }
		bookingmessaging.New(db.store, topo, log).Register(router)
		processed = db.processed(inboxName)
	default:
		return fail(fmt.Errorf("replay: --to-consumer %q: give SERVICE/ROUTE with service flight or booking", target))
	}
	route, ok := router.Route(name)
	if !ok {
		closeDB()
		var names []string
		for _, r := range router.Routes() {
			names = append(names, service+"/"+r.Name)
		}
		slices.Sort(names)
		return fail(fmt.Errorf("replay: no route %q; %s has %s", target, service, strings.Join(names, ", ")))
	}
	return route, processed, closeDB, nil
}

func orAll(subject string) string {
	if subject == "" {
		return "every subject"
	}
	return subject
}
