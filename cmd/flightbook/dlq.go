package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/dlq"
	"github.com/flightbook/flightbook/events"
	bookingmessaging "github.com/flightbook/flightbook/services/booking/messaging"
	flightmessaging "github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
)

// dlqConfig is what every dlq subcommand reads; redrive also reads the settings of the
// services whose messages it redrives (flightConfig, bookingConfig).
type dlqConfig struct {
	LogLevel string `split_words:"true" default:"info" desc:"debug, info, warn or error (logs go to stderr)"`
	NATS     natsConfig
}

const dlqUsage = `usage: flightbook dlq <subcommand> [flags]

Inspects and repairs the dead-letter queue: the messages a service's consumer gave up on after
its last delivery failed (stream DLQ, subjects dlq.<service>.<route>).

subcommands:
  list     [--service S] [--route R] [--booking ID] [--json]
           list dead-lettered messages, oldest first, with their error
  show     SEQ
           one message in full: headers and payload
  redrive  [--seq N,...] [--service S] [--route R] [--booking ID] [--dry-run] [--timeout 30s]
           hand each message to its service's handler again (after the cause is fixed);
           those handled are removed from the DLQ, those that fail again stay
  purge    (--seq N,... | --service S | --route R | --booking ID | --all) [--reason TEXT] [--dry-run]
           drop messages for good, recording each on dlq.purged.<service>.<route>

redrive connects to each service's database exactly as the service does, from the same
FLIGHTBOOK_* variables (see flightbook flight --help and flightbook booking --help); handlers
are idempotent, so a message already processed changes nothing when redriven.
redrive and purge print what they did and a summary, and exit 1 if any message failed.

Settings (environment):`

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg dlqConfig
	usage := func() {
		fmt.Fprintln(stderr, dlqUsage)
		_ = config.Usage(stderr, &cfg)
	}
	if len(args) == 0 {
		usage()
		return errors.New("dlq: no subcommand given")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "--help", "help":
		usage()
		return flag.ErrHelp
	case "list", "show", "redrive", "purge":
	default:
		usage()
		return fmt.Errorf("dlq: unknown subcommand %q", sub)
	}

	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		f      dlq.Filter
		seqs   seqList
		dryRun bool
		asJSON bool
		all    bool
		reason string
		limit  time.Duration
	)
	if sub != "show" {
		fs.StringVar(&f.Service, "service", "", "only messages of this consuming service (flight, booking)")
		fs.StringVar(&f.Route, "route", "", "only messages of this route (handler), e.g. seat-hold")
		fs.StringVar(&f.BookingID, "booking", "", "only messages whose payload is about this booking id")
	}
	switch sub {
	case "list":
		fs.BoolVar(&asJSON, "json", false, "one JSON object per message instead of a table")
	case "redrive", "purge":
		fs.Var(&seqs, "seq", "only these DLQ sequence numbers (comma-separated or repeated); not with the filters")
		fs.BoolVar(&dryRun, "dry-run", false, "say what would be done and change nothing")
	}
	switch sub {
	case "redrive":
		fs.DurationVar(&limit, "timeout", consumer.DefaultAckWait, "how long one handler run may take")
	case "purge":
		fs.BoolVar(&all, "all", false, "purge every message in the DLQ (required when no --seq or filter is given)")
		fs.StringVar(&reason, "reason", "", "why, kept in the purge record")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: flightbook dlq %s [flags]; flightbook dlq --help describes every subcommand\n\nflags:\n", sub)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub != "show" && fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("dlq %s: unexpected arguments %q", sub, fs.Args())
	}

	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := loggerFor(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	nc, js, err := connectNATS(ctx, cfg.NATS.URL, "flightbook-dlq", log)
	if err != nil {
		return err
	}
	defer func() {
		// Closing on purpose is no disconnection to warn about, and the warning would be
		// written by a callback after the command has returned.
		nc.SetDisconnectErrHandler(nil)
		nc.Close()
	}()
	q := dlq.New(js, cfg.NATS.Namespace, log)

	switch sub {
	case "list":
		entries, err := q.List(ctx, f)
		if err != nil {
			return err
		}
		return printEntries(stdout, entries, asJSON)
	case "show":
		if fs.NArg() != 1 {
			fs.Usage()
			return errors.New("dlq show: give one sequence number")
		}
		seq, err := strconv.ParseUint(fs.Arg(0), 10, 64)
		if err != nil {
			return fmt.Errorf("dlq show: sequence %q: %w", fs.Arg(0), err)
		}
		e, err := q.Show(ctx, seq)
		if err != nil {
			return err
		}
		return printEntry(stdout, e)
	}

	var entries []dlq.Entry
	switch {
	case len(seqs) > 0 && (f != dlq.Filter{} || all):
		return fmt.Errorf("dlq %s: --seq names the messages itself; drop the filters", sub)
	case len(seqs) > 0:
		// Every sequence must name a dead letter before anything is changed: a typo must not
		// leave half a batch done.
		for _, seq := range seqs {
			e, err := q.Show(ctx, seq)
			if err != nil {
				return fmt.Errorf("dlq %s: %w", sub, err)
			}
			entries = append(entries, e)
		}
	case sub == "purge" && f == dlq.Filter{} && !all:
		return errors.New("dlq purge: name the messages with --seq or a filter, or pass --all")
	default:
		if entries, err = q.List(ctx, f); err != nil {
			return err
		}
	}

	var sum dlq.Summary
	if sub == "redrive" {
		handlerFor, closeAll, err := serviceHandlers(ctx, entries, dryRun, log)
		if err != nil {
			return err
		}
		defer closeAll()
		sum, err = q.Redrive(ctx, entries, handlerFor, dlq.RedriveOptions{DryRun: dryRun, Timeout: limit})
		printSummary(stdout, sum)
		if err != nil {
			return err
		}
	} else {
		by := "unknown"
		if u, err := user.Current(); err == nil {
			by = u.Username
		}
		sum, err = q.Purge(ctx, entries, dlq.PurgeOptions{DryRun: dryRun, By: by, Reason: reason})
		printSummary(stdout, sum)
		if err != nil {
			return err
		}
	}
	if sum.Failed > 0 {
		return fmt.Errorf("dlq %s: %d of %d failed and stay in the DLQ", sub, sum.Failed, sum.Read)
	}
	return nil
}

// serviceHandlers returns the live handlers of the services that entries belong to, each built
// as serveFlight and serveBooking build them, on the service's own database (openFlightDB,
// openBookingDB: the server database or the SQLite file), so that a redriven message goes
// through the same code, inbox and outbox as a delivery. The replies they queue in the outbox
// are published by the running service's relay (it polls), so none is run here. A dry run
// connects to no database: Redrive calls no handler then, it only asks whether one exists.
func serviceHandlers(ctx context.Context, entries []dlq.Entry, dryRun bool, log *slog.Logger) (dlq.HandlerFor, func(), error) {
	services := map[string]func(route string) (consumer.Handler, bool){}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, e := range entries {
		if _, done := services[e.Service]; done {
			continue
		}
		switch e.Service {
		case events.ServiceFlight:
			var cfg flightConfig
			if err := config.Load(&cfg); err != nil {
				closeAll()
				return nil, nil, err
			}
			topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/flight"}
			if dryRun {
				// Any store type will do: the handlers are only looked up, never run.
				services[e.Service] = flightmessaging.New((*postgres.Inventory)(nil), topo, nil, log).Handler
				continue
			}
			db, err := openFlightDB(ctx, cfg, topo, log)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("dlq redrive: flight database: %w", err)
			}
			closers = append(closers, db.close)
			services[e.Service] = db.handlers(nil, log).Handler
		case events.ServiceBooking:
			var cfg bookingConfig
			if err := config.Load(&cfg); err != nil {
				closeAll()
				return nil, nil, err
			}
			topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/booking"}
			if dryRun {
				services[e.Service] = bookingmessaging.New(nil, topo, log).Handler
				continue
			}
			db, err := openBookingDB(ctx, cfg, topo, log)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("dlq redrive: booking database: %w", err)
			}
			closers = append(closers, func() { _ = db.sql.Close() })
			services[e.Service] = bookingmessaging.New(db.store, topo, log).Handler
		}
	}
	handlerFor := func(service, route string) (consumer.Handler, bool) {
		h, ok := services[service]
		if !ok {
			return nil, false
		}
		return h(route)
	}
	return handlerFor, closeAll, nil
}

// seqList is a --seq flag: DLQ sequence numbers, comma-separated or repeated.
type seqList []uint64

func (s *seqList) String() string {
	var parts []string
	for _, n := range *s {
		parts = append(parts, strconv.FormatUint(n, 10))
	}
	return strings.Join(parts, ",")
}

func (s *seqList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a sequence number", p)
		}
		*s = append(*s, n)
	}
	return nil
}

// listed is an entry as list --json writes it: everything but the payload and raw headers,
// which show prints.
type listed struct {
	Seq             uint64    `json:"seq"`
	Time            time.Time `json:"time"`
	Service         string    `json:"service"`
	Route           string    `json:"route"`
	OriginalSubject string    `json:"original_subject"`
	MsgID           string    `json:"msg_id"`
	Type            string    `json:"type,omitempty"`
	BookingID       string    `json:"booking_id,omitempty"`
	Error           string    `json:"error"`
	Permanent       bool      `json:"permanent"`
	Deliveries      int       `json:"deliveries"`
}

func printEntries(w io.Writer, entries []dlq.Entry, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if err := enc.Encode(listed{e.Seq, e.Time.UTC(), e.Service, e.Route, e.OriginalSubject, e.MsgID,
				e.Type, e.BookingID, e.Error, e.Permanent, e.Deliveries}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tSERVICE\tROUTE\tTRIES\tBOOKING\tMSG-ID\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Service, e.Route,
			e.Deliveries, orDash(e.BookingID), e.MsgID, shorten(e.Error, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d message(s); flightbook dlq show SEQ prints one in full\n", len(entries))
	return err
}

func printEntry(w io.Writer, e dlq.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "seq:\t%d\n", e.Seq)
	fmt.Fprintf(tw, "dead-lettered:\t%s\n", e.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "service/route:\t%s/%s\n", e.Service, e.Route)
	fmt.Fprintf(tw, "original:\t%s (stream %s, seq %d)\n", e.OriginalSubject, e.OriginalStream, e.OriginalSeq)
	fmt.Fprintf(tw, "msg id:\t%s\n", e.MsgID)
	fmt.Fprintf(tw, "type:\t%s\n", orDash(e.Type))
	fmt.Fprintf(tw, "booking:\t%s\n", orDash(e.BookingID))
	fmt.Fprintf(tw, "deliveries:\t%d (permanent error: %v)\n", e.Deliveries, e.Permanent)
	fmt.Fprintf(tw, "error:\t%s\n", e.Error)
	fmt.Fprintln(tw, "headers:")
	for _, k := range slices.Sorted(maps.Keys(e.Header)) {
		for _, v := range e.Header[k] {
			fmt.Fprintf(tw, "  %s:\t%s\n", k, v)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "payload:")
	var pretty bytes.Buffer
	if json.Indent(&pretty, e.Data, "  ", "  ") == nil {
		_, err := fmt.Fprintf(w, "  %s\n", pretty.Bytes())
		return err
	}
	_, err := fmt.Fprintf(w, "  %q\n", e.Data) // not JSON: quoted, so control bytes cannot reach the terminal
	return err
}

func printSummary(w io.Writer, sum dlq.Summary) {
	for _, r := range sum.Results {
		line := fmt.Sprintf("seq %d %s/%s msg %s: %s", r.Entry.Seq, r.Entry.Service, r.Entry.Route, r.Entry.MsgID, r.Outcome)
		if r.Err != nil {
			line += ": " + r.Err.Error()
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, sum)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
