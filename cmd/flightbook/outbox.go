package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
)

// outboxConfig is what flightbook outbox reads itself; republish also reads the settings of
// the service whose outbox it republishes (flightConfig, bookingConfig).
type outboxConfig struct {
	LogLevel string `split_words:"true" default:"info" desc:"debug, info, warn or error (logs go to stderr)"`
}

const outboxUsage = `usage: flightbook outbox republish --service flight|booking --since RFC3339 [--dry-run]

Publishes again every row of a service's outbox created at or after --since, published or
not, in the order they were written: the recovery when the broker lost messages (a stream
deleted or restored from an older backup). Published rows are kept for FLIGHTBOOK_OUTBOX_RETENTION
(72h by default); older ones are gone.

Each message keeps its Nats-Msg-Id (the event id), so JetStream drops a copy of a message it
stored within the stream's duplicate window (FLIGHTBOOK_STREAMS_DUPLICATES, 10m by default);
older copies are stored again and the consumers' inboxes make them no-ops.

It connects to the service's database and NATS exactly as the service does, from the same
FLIGHTBOOK_* variables (see flightbook flight --help, flightbook booking --help), and creates
the streams if they are missing, as the service does at start-up. --dry-run only counts the
rows.

flags:`

func runOutbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg outboxConfig
	usage := func(fs *flag.FlagSet) {
		fmt.Fprintln(stderr, outboxUsage)
		if fs != nil {
			fs.PrintDefaults()
		}
		fmt.Fprintln(stderr, "\nSettings (environment):")
		_ = config.Usage(stderr, &cfg)
	}
	if len(args) == 0 {
		usage(nil)
		return errors.New("outbox: no subcommand given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(nil)
		return flag.ErrHelp
	case "republish":
	default:
		usage(nil)
		return fmt.Errorf("outbox: unknown subcommand %q", args[0])
	}

	var (
		service, since string
		dryRun         bool
	)
	fs := flag.NewFlagSet("outbox republish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&service, "service", "", "whose outbox: flight or booking (required)")
	fs.StringVar(&since, "since", "", "republish the rows created at or after this time, RFC 3339 (required)")
	fs.BoolVar(&dryRun, "dry-run", false, "count the rows and publish nothing")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("outbox republish: unexpected arguments %q", fs.Args())
	}
	if service != events.ServiceFlight && service != events.ServiceBooking {
		fs.Usage()
		return fmt.Errorf("outbox republish: --service %q: give flight or booking", service)
	}
	if since == "" {
		fs.Usage()
		return errors.New("outbox republish: --since is required")
	}
	from, err := time.Parse(time.RFC3339, since)
	if err != nil {
		return fmt.Errorf("outbox republish: --since: %w", err)
	}
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := loggerFor(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}

	// What republishing needs of a service: how it reaches NATS, and its database's relay and
	// count of the rows (for the dry run), on whichever database the service is configured
	// with (openFlightDB, openBookingDB).
	var (
		svcNATS  natsConfig
		streams  events.StreamConfig
		relayCfg outbox.RelayConfig
		newRelay func(js jetstream.JetStream, cfg outbox.RelayConfig, log *slog.Logger) *outbox.Relay
		count    func(ctx context.Context, since time.Time) (int64, error)
	)
	switch service {
	case events.ServiceFlight:
		var sc flightConfig
		if err := config.Load(&sc); err != nil {
			return err
		}
		db, err := openFlightDB(ctx, sc, events.Topology{Namespace: sc.NATS.Namespace, Source: "flightbook/flight"}, log)
		if err != nil {
			return fmt.Errorf("outbox republish: flight database: %w", err)
		}
		defer db.close()
		svcNATS, streams, relayCfg = sc.NATS, sc.Streams, sc.Outbox
		newRelay, count = db.relay, db.countOutbox
	case events.ServiceBooking:
		var sc bookingConfig
		if err := config.Load(&sc); err != nil {
			return err
		}
		db, err := openBookingDB(ctx, sc, events.Topology{Namespace: sc.NATS.Namespace, Source: "flightbook/booking"}, log)
		if err != nil {
			return fmt.Errorf("outbox republish: booking database: %w", err)
		}
		defer db.sql.Close()
		svcNATS, streams, relayCfg = sc.NATS, sc.Streams, sc.Outbox
		newRelay, count = db.relay, db.countOutbox
	}
	when := from.Format(time.RFC3339)

	if dryRun {
		n, err := count(ctx, from)
		if err != nil {
			return fmt.Errorf("outbox republish: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "would republish %d %s outbox row(s) created since %s (dry run: nothing published)\n", n, service, when)
		return err
	}

	nc, js, err := connectNATS(ctx, svcNATS.URL, "flightbook-outbox", log)
	if err != nil {
		return err
	}
	defer func() {
		// As in dlq: closing on purpose is no disconnection to warn about.
		nc.SetDisconnectErrHandler(nil)
		nc.Close()
	}()
	// A stream the broker lost must exist again before anything can be stored in it.
	if err := events.EnsureStreams(ctx, js, events.Topology{Namespace: svcNATS.Namespace}, streams); err != nil {
		return err
	}
	n, err := newRelay(js, relayCfg, log).Republish(ctx, from)
	fmt.Fprintf(stdout, "republished %d %s outbox row(s) created since %s; JetStream kept one copy of each message id within its duplicate window\n",
		n, service, when)
	return err
}

// countPostgresOutbox counts the flight outbox's rows that Relay.Republish(since) would send.
// The relay has no dry run of its own; this is the same condition as its query.
func countPostgresOutbox(ctx context.Context, pool *pgxpool.Pool, since time.Time) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE created_at >= $1`, since).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox rows since %s: %w", since.Format(time.RFC3339), err)
	}
	return n, nil
}

// mysqlOutboxTime is how the MySQL relay writes a time to compare with the outbox's
// created_at, a UTC DATETIME(6).
const mysqlOutboxTime = "2006-01-02 15:04:05.999999"

// countSQLOutbox counts the rows of a MySQL or SQLite outbox that Relay.Republish(since) would
// send. Both keep created_at in UTC (a DATETIME, or text in outbox.SQLiteTimeFormat), and the
// relays compare it with since written as UTC text in that layout, whatever time zone a driver
// would convert a time.Time to; this does the same.
func countSQLOutbox(ctx context.Context, db *sql.DB, since time.Time, layout string) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE created_at >= ?`,
		since.UTC().Format(layout)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count outbox rows since %s: %w", since.Format(time.RFC3339), err)
	}
	return n, nil
}
