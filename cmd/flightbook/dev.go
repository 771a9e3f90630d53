package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/config"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/services/flight"
)

// runDev runs the system in one process with an embedded JetStream server and SQLite files,
// so that trying flightbook needs nothing but Go. Settings are the same variables the services
// read; FLIGHTBOOK_POSTGRES_URL, FLIGHTBOOK_MYSQL_DSN and FLIGHTBOOK_NATS_URL, when set, use
// that server instead.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg flightConfig
	var bcfg bookingConfig
	var dcfg debugConfig
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "data", "directory for the services' SQLite files and the embedded NATS server's JetStream store")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flightbook dev [--data DIR]\n\nRuns the flight and booking services with an embedded NATS JetStream server and SQLite files under DIR (FLIGHTBOOK_POSTGRES_URL, FLIGHTBOOK_MYSQL_DSN or FLIGHTBOOK_NATS_URL point a part at a real server instead), seeding a demo catalogue on first start.\nSettings (environment):")
		_ = config.Usage(stderr, &cfg)
		_ = config.Usage(stderr, &bcfg)
		_ = config.Usage(stderr, &dcfg)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.Load(&cfg); err != nil {
		return err
	}
	batchingConsumerDefaults(&cfg.Consumer)
	if err := config.Load(&bcfg); err != nil {
		return err
	}
	batchingConsumerDefaults(&bcfg.Consumer)
	if err := config.Load(&dcfg); err != nil {
		return err
	}
	log, err := loggerFor(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}

	// With no database server named, each service keeps its data in a SQLite file under the
	// data directory, so trying flightbook needs nothing but Go.
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("dev: data directory: %w", err)
	}
	if os.Getenv("FLIGHTBOOK_POSTGRES_URL") == "" && cfg.SQLitePath == "" {
		cfg.SQLitePath = filepath.Join(*dataDir, "flight.db")
	}
	if os.Getenv("FLIGHTBOOK_MYSQL_DSN") == "" && bcfg.SQLitePath == "" {
		bcfg.SQLitePath = filepath.Join(*dataDir, "booking.db")
	}
	if os.Getenv("FLIGHTBOOK_NATS_URL") == "" {
		ns, err := startEmbeddedNATS(filepath.Join(*dataDir, "nats"), -1)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		cfg.NATS.URL = ns.ClientURL()
		bcfg.NATS.URL = cfg.NATS.URL
		log.Info("embedded NATS JetStream started", "url", cfg.NATS.URL, "store", filepath.Join(*dataDir, "nats"))
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("dev: flight service listen on %s: %w", cfg.HTTPAddr, err)
	}
	bln, err := net.Listen("tcp", bcfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("dev: booking service listen on %s: %w", bcfg.HTTPAddr, err)
	}
	if os.Getenv("FLIGHTBOOK_FLIGHT_SERVICE_URL") == "" {
		bcfg.FlightServiceURL = "http://" + ln.Addr().String()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveFlight(gctx, cfg, ln, log) })
	g.Go(func() error { return serveBooking(gctx, bcfg, bln, log) })
	g.Go(func() error { return serveDebug(gctx, dcfg, log) })
	g.Go(func() error { return seedDemo(gctx, cfg, ln.Addr().String(), bln.Addr().String(), stdout, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// seedDemo fills an empty catalogue with a few cities, airports, an airplane and flights over
// the next weeks, then prints where everything is and tokens to try it with.
func seedDemo(ctx context.Context, cfg flightConfig, addr, bookingAddr string, stdout io.Writer, log *slog.Logger) error {
	// Wait until the flight service is ready, so its migrations are done: SQLite has no
	// migration lock to make two openers of a new file safe.
	if err := awaitReady(ctx, "http://"+addr+"/readyz"); err != nil {
		return err
	}
	cfg.PostgresMax = 2
	db, err := openFlightDB(ctx, cfg, events.Topology{Namespace: cfg.NATS.Namespace, Source: "flightbook/flight"}, log)
	if err != nil {
		return err
	}
	defer db.close()
	// The demo flights are announced like any other, so the booking service knows them.
	cat := db.catalog
	cities, err := cat.Cities(ctx)
	if err != nil {
		return err
	}
	if len(cities) == 0 {
		if err := seedCatalog(ctx, cat); err != nil {
			return fmt.Errorf("dev: seed demo catalogue: %w", err)
		}
		log.Info("seeded the demo catalogue")
	}
	a, err := auth.New(cfg.Auth, nil)
	if err != nil {
		return err
	}
	admin, _ := a.Token("admin", auth.RoleAdmin, 24*time.Hour)
	customer, _ := a.Token("alice", "", 24*time.Hour)
	_, port, _ := net.SplitHostPort(addr)
	_, bport, _ := net.SplitHostPort(bookingAddr)
	fmt.Fprintf(stdout, `
flightbook is running (Ctrl-C stops it).

  flight service   http://127.0.0.1:%[1]s/api/v1/flights
  booking service  http://127.0.0.1:%[4]s/api/v1/bookings

  ADMIN_TOKEN=%[2]s
  TOKEN=%[3]s

  curl -s 'http://127.0.0.1:%[1]s/api/v1/flights?from=DEL&to=BOM&travellers=2'
  curl -s -X POST http://127.0.0.1:%[4]s/api/v1/bookings -H "Authorization: Bearer $TOKEN" -H 'Prefer: wait=5' -d '{"flight_id":1,"seats":2}'
`, port, admin, customer, bport)
	return nil
}

// awaitReady polls url until it answers 200 or ctx ends.
func awaitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func seedCatalog(ctx context.Context, cat flight.Catalog) error {
	type airport struct{ code, name, city, country string }
	airports := []airport{
		{"DEL", "Indira Gandhi International", "Delhi", "IN"},
		{"BOM", "Chhatrapati Shivaji Maharaj International", "Mumbai", "IN"},
		{"BLR", "Kempegowda International", "Bengaluru", "IN"},
		{"MAA", "Chennai International", "Chennai", "IN"},
	}
	for _, ap := range airports {
		c, err := cat.CreateCity(ctx, flight.City{Name: ap.city, Country: ap.country})
		if err != nil {
			return err
		}
		if _, err := cat.CreateAirport(ctx, flight.Airport{Code: ap.code, Name: ap.name, CityID: c.ID}); err != nil {
			return err
		}
	}
	plane, err := cat.CreateAirplane(ctx, flight.Airplane{Model: "Airbus A320neo", Capacity: 180, Cabins: []flight.Cabin{
		{Class: flight.CabinBusiness, Rows: 2, SeatsPerRow: 6}, {Class: flight.CabinEconomy, Rows: 28, SeatsPerRow: 6},
	}})
	if err != nil {
		return err
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	n := 0
	for d := range 21 {
		for i, from := range airports {
			to := airports[(i+1+d)%len(airports)]
			if to.code == from.code {
				continue
			}
			n++
			dep := day.AddDate(0, 0, d).Add(time.Duration(5+3*i) * time.Hour)
			if _, err := cat.CreateFlight(ctx, flight.NewFlight{
				FlightNumber: fmt.Sprintf("FB%d", 100+n), AirplaneID: plane.ID,
				DepartureAirport: from.code, ArrivalAirport: to.code,
				DepartureTime: dep, ArrivalTime: dep.Add(2*time.Hour + 10*time.Minute),
				FareAmount: int64(350000 + 25000*((d+i)%6)), Currency: "INR", BoardingGate: fmt.Sprintf("%c%d", 'A'+i, 1+d%9),
			}); err != nil {
				return err
			}
		}
	}
	return nil
}
