package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/services/booking"
	bookingapi "github.com/flightbook/flightbook/services/booking/api"
	"github.com/flightbook/flightbook/services/booking/messaging"
	"github.com/flightbook/flightbook/services/booking/mysql"
	bookingsqlite "github.com/flightbook/flightbook/services/booking/sqlite"
	"github.com/flightbook/flightbook/status"
	"github.com/flightbook/flightbook/web"
)

// bookingConfig is every setting of the booking service (FLIGHTBOOK_ prefix).
type bookingConfig struct {
	HTTPAddr       string        `envconfig:"BOOKING_HTTP_ADDR" default:":8082" desc:"address the booking service's HTTP API listens on"`
	MySQLDSN       string        `envconfig:"MYSQL_DSN" default:"root@tcp(127.0.0.1:3306)/flightbook?parseTime=true" desc:"booking service database, a go-sql-driver DSN (created if missing)"`
	MySQLMaxConns  int           `envconfig:"MYSQL_MAX_CONNS" default:"20" desc:"maximum connections to the booking database"`
	SQLitePath     string        `envconfig:"BOOKING_SQLITE" desc:"path of a SQLite file to keep the booking service's data in instead of MySQL (created if missing; one replica only); flightbook dev uses DIR/booking.db unless FLIGHTBOOK_MYSQL_DSN is set"`
	HoldTTL        time.Duration `envconfig:"BOOKING_HOLD_TTL" default:"10m" desc:"how long held seats wait for payment"`
	PendingTimeout time.Duration `envconfig:"BOOKING_PENDING_TIMEOUT" default:"2m" desc:"how long a booking may wait for the flight service's answer"`
	ExpiryInterval time.Duration `envconfig:"BOOKING_EXPIRY_INTERVAL" default:"5s" desc:"how often the expiry scheduler looks for expired holds"`
	ExpiryBatch    int           `envconfig:"BOOKING_EXPIRY_BATCH" default:"100" desc:"bookings the expiry scheduler claims at a time"`
	KeyStaleAfter  time.Duration `envconfig:"BOOKING_IDEMPOTENCY_STALE_AFTER" default:"2m" desc:"after this long an unfinished request's Idempotency-Key may be taken over by a retry"`
	LogLevel       string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	// Only the periodic reconciliation asks the flight service; no request path calls it.
	FlightServiceURL string `envconfig:"FLIGHT_SERVICE_URL" default:"http://127.0.0.1:8081" desc:"base URL of the flight service's API, which the periodic reconciliation (FLIGHTBOOK_RECONCILE_INTERVAL) reads holds from"`
	NATS             natsConfig
	Streams          events.StreamConfig
	Auth             auth.Config
	HTTP             web.ServerConfig
	Outbox           outbox.RelayConfig
	Consumer         consumer.Config

	ReconcileInterval time.Duration `envconfig:"RECONCILE_INTERVAL" default:"0" desc:"how often to compare bookings with the flight service's holds and log the divergences (report only; flightbook reconcile --fix repairs); 0 is off"`
}

func runBooking(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bookingConfig
	fs := flag.NewFlagSet("booking", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flightbook booking\n\nRuns the booking service. Settings (environment):")
		_ = config.Usage(stderr, &cfg)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.Load(&cfg); err != nil {
		return err
	}
	batchingConsumerDefaults(&cfg.Consumer)
	log, err := loggerFor(stdout, cfg.LogLevel)
	if err != nil {
		return err
	}
	return serveBooking(ctx, cfg, nil, log)
}

// bookingDB is the booking service's database: MySQL, or a SQLite file when
// FLIGHTBOOK_BOOKING_SQLITE is set (dev mode; one replica, since SQLite is one machine's file).
type bookingDB struct {
	name  string // the /readyz check's name
	sql   *sql.DB
	store booking.Store
	outboxDB
}

// openBookingDB opens and migrates the booking database and builds its store. Every booking
// change writes its events to the outbox in its own transaction, through the store's Emit.
func openBookingDB(ctx context.Context, cfg bookingConfig, topo events.Topology, log *slog.Logger) (bookingDB, error) {
	rules := booking.Rules{HoldTTL: cfg.HoldTTL, PendingTimeout: cfg.PendingTimeout}
	if cfg.SQLitePath != "" {
		db, err := bookingsqlite.Open(ctx, cfg.SQLitePath, log)
		if err != nil {
			return bookingDB{}, err
		}
		store := bookingsqlite.NewStore(db, rules, messaging.Emit(topo, outbox.AddSQLite)).WithKeyStaleAfter(cfg.KeyStaleAfter)
		return bookingDB{name: "sqlite", sql: db, store: store, outboxDB: sqliteOutboxDB(db)}, nil
	}
	db, err := mysql.Open(ctx, cfg.MySQLDSN, cfg.MySQLMaxConns, log)
	if err != nil {
		return bookingDB{}, err
	}
	store := mysql.NewStore(db, rules, messaging.Emit(topo, outbox.AddMySQL)).WithKeyStaleAfter(cfg.KeyStaleAfter)
	return bookingDB{name: "mysql", sql: db, store: store, outboxDB: mysqlOutboxDB(db)}, nil
}

// serveBooking runs the booking service until ctx ends. ln, when not nil, is the listener to
// serve on (tests and the dev mode pick free ports).
func serveBooking(ctx context.Context, cfg bookingConfig, ln net.Listener, log *slog.Logger) error {
	if cfg.ExpiryBatch <= 0 || cfg.ExpiryInterval <= 0 || cfg.HoldTTL <= 0 || cfg.PendingTimeout <= 0 {
		return errors.New("booking: hold TTL, pending timeout, expiry interval and expiry batch must be positive")
	}
	authn, err := auth.New(cfg.Auth, log)
	if err != nil {
		return err
	}
	topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/booking"}
	db, err := openBookingDB(ctx, cfg, topo, log)
	if err != nil {
		return err
	}
	defer db.sql.Close()

	nc, js, err := connectNATS(ctx, cfg.NATS.URL, "flightbook-booking", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := events.EnsureStreams(ctx, js, topo, cfg.Streams); err != nil {
		return err
	}
	// The router adds the service to its own log lines; everything else gets it here.
	router, err := consumer.New(nc, js, events.ServiceBooking, cfg.NATS.Namespace, cfg.Consumer, log)
	if err != nil {
		return err
	}
	log = log.With("service", events.ServiceBooking)
	relay := db.relay(js, cfg.Outbox, log)
	store := db.store
	// The reply handlers, and the events of other replicas, wake the API's Prefer: wait
	// requests.
	changes := &booking.Changes{}
	messaging.New(store, topo, log).WithChanges(changes).Register(router)
	wake, err := messaging.WakeOnEvents(nc, topo, changes)
	if err != nil {
		return err
	}
	defer wake.Unsubscribe() //nolint:errcheck // the connection closes on return anyway
	reconciler, err := newBookingReconciler(cfg, store, authn)
	if err != nil {
		return err
	}

	engine := web.NewEngine(log)
	var withReconcile func(*status.Report)
	if cfg.ReconcileInterval > 0 {
		withReconcile = func(r *status.Report) {
			n, at := reconciler.Last()
			r.Reconcile = &status.Reconcile{Divergences: n, CheckedAt: at}
		}
	}
	web.HealthWithDetail(engine, messagingStatus(js, relay, router, topo, events.ServiceBooking, withReconcile),
		web.Check{Name: db.name, Check: store.Ping},
		web.Check{Name: "nats", Check: natsReady(nc)},
		web.Check{Name: "consumers", Check: router.Ready},
	)
	bookingapi.Routes(engine, bookingapi.Deps{
		Store:   store,
		Gateway: booking.NewFakeGateway(),
		Auth:    authn,
		Notify:  relay.Notify,
		Changes: changes,
	})
	log.Warn("payments go to the fake gateway: tok_success pays, tok_decline is declined, tok_timeout times out after charging")

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("booking: listen on %s: %w", cfg.HTTPAddr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return router.Run(gctx) })
	g.Go(func() error { return booking.RunExpiry(gctx, store, cfg.ExpiryInterval, cfg.ExpiryBatch, log) })
	g.Go(func() error { return reconciler.Run(gctx, cfg.ReconcileInterval, log) })
	g.Go(func() error { return web.Serve(gctx, ln, engine, cfg.HTTP, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("booking: %w", err)
	}
	log.Info("booking service stopped")
	return nil
}
