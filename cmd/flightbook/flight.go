package main

import (
	"context"
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
	"github.com/flightbook/flightbook/services/flight"
	"github.com/flightbook/flightbook/services/flight/api"
	"github.com/flightbook/flightbook/services/flight/messaging"
	"github.com/flightbook/flightbook/services/flight/postgres"
	flightsqlite "github.com/flightbook/flightbook/services/flight/sqlite"
	"github.com/flightbook/flightbook/web"
)

// flightConfig is every setting of the flight service (FLIGHTBOOK_ prefix).
type flightConfig struct {
	HTTPAddr    string `envconfig:"FLIGHT_HTTP_ADDR" default:":8081" desc:"address the flight service's HTTP API listens on"`
	PostgresURL string `envconfig:"POSTGRES_URL" default:"postgres://postgres@127.0.0.1:5432/flightbook?sslmode=disable" desc:"flight service database (created if missing)"`
	PostgresMax int32  `envconfig:"POSTGRES_MAX_CONNS" default:"20" desc:"maximum connections in the flight service's pool"`
	SQLitePath  string `envconfig:"FLIGHT_SQLITE" desc:"path of a SQLite file to keep the flight service's data in instead of PostgreSQL (created if missing; one replica only); flightbook dev uses DIR/flight.db unless FLIGHTBOOK_POSTGRES_URL is set"`
	LogLevel    string `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	// AnnounceInterval is how often open flights are announced again; each is re-announced
	// once half the FLIGHT stream's max age has passed since its last announcement.
	AnnounceInterval time.Duration `envconfig:"CATALOG_ANNOUNCE_INTERVAL" default:"1h" desc:"how often the flight service looks for open flights to announce again, so the FLIGHT stream always holds every open flight (each is re-announced after half the stream max age)"`
	NATS             natsConfig
	Streams          events.StreamConfig
	Auth             auth.Config
	HTTP             web.ServerConfig
	Outbox           outbox.RelayConfig
	Consumer         consumer.Config
}

func runFlight(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg flightConfig
	fs := flag.NewFlagSet("flight", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flightbook flight\n\nRuns the flight service. Settings (environment):")
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
	return serveFlight(ctx, cfg, nil, log)
}

// flightCatalog is the catalogue as the service runs it: the store, its health check and
// the announcer that keeps every open flight in the FLIGHT stream.
type flightCatalog interface {
	flight.Catalog
	Ping(ctx context.Context) error
	AnnounceDue(ctx context.Context, olderThan time.Duration, limit int) (int, error)
}

// flightDB is the flight service's database: PostgreSQL, or a SQLite file when
// FLIGHTBOOK_FLIGHT_SQLITE is set (dev mode; one replica, since SQLite is one machine's file).
type flightDB struct {
	name      string // the /readyz check's name
	close     func()
	catalog   flightCatalog // announces every change through the outbox
	inventory flight.Inventory
	handlers  func(notify func(), log *slog.Logger) *messaging.Handlers
	outboxDB
}

// openFlightDB opens and migrates the flight database and builds its stores.
func openFlightDB(ctx context.Context, cfg flightConfig, topo events.Topology, log *slog.Logger) (flightDB, error) {
	announce := messaging.Announce(topo)
	if cfg.SQLitePath != "" {
		db, err := flightsqlite.Open(ctx, cfg.SQLitePath, log)
		if err != nil {
			return flightDB{}, err
		}
		inv := flightsqlite.NewInventory(db)
		return flightDB{
			name: "sqlite", close: func() { _ = db.Close() },
			catalog: flightsqlite.NewCatalog(db).WithAnnounce(announce), inventory: inv,
			handlers: func(notify func(), log *slog.Logger) *messaging.Handlers {
				return messaging.New(inv, topo, notify, log)
			},
			outboxDB: sqliteOutboxDB(db),
		}, nil
	}
	pool, err := postgres.Open(ctx, cfg.PostgresURL, cfg.PostgresMax, log)
	if err != nil {
		return flightDB{}, err
	}
	inv := postgres.NewInventory(pool)
	return flightDB{
		name: "postgres", close: pool.Close,
		catalog: postgres.NewCatalog(pool).WithAnnounce(announce), inventory: inv,
		handlers: func(notify func(), log *slog.Logger) *messaging.Handlers {
			return messaging.New(inv, topo, notify, log)
		},
		outboxDB: postgresOutboxDB(pool),
	}, nil
}

// serveFlight runs the flight service until ctx ends. ln, when not nil, is the listener to
// serve on (tests and the dev mode pick free ports).
func serveFlight(ctx context.Context, cfg flightConfig, ln net.Listener, log *slog.Logger) error {
	authn, err := auth.New(cfg.Auth, log)
	if err != nil {
		return err
	}
	topo := events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/flight"}
	db, err := openFlightDB(ctx, cfg, topo, log)
	if err != nil {
		return err
	}
	defer db.close()

	nc, js, err := connectNATS(ctx, cfg.NATS.URL, "flightbook-flight", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := events.EnsureStreams(ctx, js, topo, cfg.Streams); err != nil {
		return err
	}

	// The router adds the service to its own log lines; everything else gets it here.
	router, err := consumer.New(nc, js, events.ServiceFlight, cfg.NATS.Namespace, cfg.Consumer, log)
	if err != nil {
		return err
	}
	log = log.With("service", events.ServiceFlight)
	relay := db.relay(js, cfg.Outbox, log)
	db.handlers(relay.Notify, log).Register(router)
	catalog, inv := db.catalog, db.inventory
	engine := web.NewEngine(log)
	web.HealthWithDetail(engine, messagingStatus(js, relay, router, topo, events.ServiceFlight, nil),
		web.Check{Name: db.name, Check: catalog.Ping},
		web.Check{Name: "nats", Check: natsReady(nc)},
		web.Check{Name: "consumers", Check: router.Ready},
	)
	api.Routes(engine, catalog, inv, authn)

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("flight: listen on %s: %w", cfg.HTTPAddr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return router.Run(gctx) })
	g.Go(func() error {
		return flight.RunAnnouncer(gctx, catalog.AnnounceDue, cfg.AnnounceInterval, cfg.Streams.MaxAgeOrDefault()/2, log)
	})
	g.Go(func() error { return web.Serve(gctx, ln, engine, cfg.HTTP, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flight: %w", err)
	}
	log.Info("flight service stopped")
	return nil
}

// loggerFor returns the JSON logger at the configured level.
func loggerFor(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return newLogger(w, l), nil
}
