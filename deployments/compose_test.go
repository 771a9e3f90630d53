package deployments

import (
	"context"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
)

// loadCompose loads ../docker-compose.yml the way `docker compose config` does: schema
// validation, interpolation, anchors and merge keys resolved, references checked. The
// environment is empty, so ${VAR:-default} takes its default, as it would for a new user.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithInterpolation(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return s
}

func env(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := s.Environment[name]
	if !ok || v == nil || *v == "" {
		t.Fatalf("service %s: %s is not set", s.Name, name)
	}
	return *v
}

// imageVersion splits "postgres:17" or "nats:2.12-alpine" into its name and numeric version
// parts ([17], [2 12]).
func imageVersion(t *testing.T, image string) (string, []int) {
	t.Helper()
	name, tag, ok := strings.Cut(image, ":")
	if !ok {
		t.Fatalf("image %q has no tag: pin at least the major version", image)
	}
	tag, _, _ = strings.Cut(tag, "-")
	var version []int
	for _, part := range strings.Split(tag, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			t.Fatalf("image %q: tag is not a version: %v", image, err)
		}
		version = append(version, n)
	}
	return name, version
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)

	// Images: the versions the services are written and tested against.
	for _, tt := range []struct {
		service, image string
		min            []int // lowest accepted version
		sameMajorMinor bool  // the version must match min's major[.minor] exactly
	}{
		{"mysql", "mysql", []int{8, 4}, true},
		{"postgres", "postgres", []int{17}, true},
		{"nats", "nats", []int{2, 11}, false},
	} {
		s := service(t, p, tt.service)
		name, version := imageVersion(t, s.Image)
		if name != tt.image {
			t.Errorf("service %s: image %q, want %s", tt.service, s.Image, tt.image)
		}
		switch {
		case len(version) < len(tt.min):
			t.Errorf("service %s: image %q pins less than %v", tt.service, s.Image, tt.min)
		case tt.sameMajorMinor && !slices.Equal(version[:len(tt.min)], tt.min):
			t.Errorf("service %s: image %q, want version %v", tt.service, s.Image, tt.min)
		case !tt.sameMajorMinor && (version[0] != tt.min[0] || slices.Compare(version[:len(tt.min)], tt.min) < 0):
			t.Errorf("service %s: image %q, want %d.x at least %v", tt.service, s.Image, tt.min[0], tt.min)
		}
	}

	// Every service reports its health, so that depends_on can wait for it and
	// `docker compose ps` shows the truth.
	for name, s := range p.Services {
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
			t.Errorf("service %s has no health check", name)
		}
	}

	// The data services keep their data in named volumes, which survive `docker compose down`.
	for _, tt := range []struct{ service, target string }{
		{"postgres", "/var/lib/postgresql/data"},
		{"mysql", "/var/lib/mysql"},
		{"nats", "/data"},
	} {
		s := service(t, p, tt.service)
		i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == tt.target })
		if i < 0 || s.Volumes[i].Type != types.VolumeTypeVolume {
			t.Errorf("service %s: no named volume at %s", tt.service, tt.target)
			continue
		}
		if _, ok := p.Volumes[s.Volumes[i].Source]; !ok {
			t.Errorf("service %s: volume %q is not declared", tt.service, s.Volumes[i].Source)
		}
	}

	// Published ports: the APIs and NATS on every interface, the databases only on loopback
	// (they are there for debugging, with well-known passwords).
	for _, tt := range []struct {
		service  string
		port     uint32
		loopback bool
	}{
		{"flight", 8081, false},
		{"booking", 8082, false},
		{"nats", 4222, false},
		{"nats", 8222, false},
		{"postgres", 5432, true},
		{"mysql", 3306, true},
	} {
		s := service(t, p, tt.service)
		i := slices.IndexFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == tt.port })
		if i < 0 {
			t.Errorf("service %s does not publish %d", tt.service, tt.port)
			continue
		}
		pc := s.Ports[i]
		if pc.Published != strconv.Itoa(int(tt.port)) {
			t.Errorf("service %s: port %d published as %q, want the same number", tt.service, tt.port, pc.Published)
		}
		if tt.loopback && pc.HostIP != "127.0.0.1" {
			t.Errorf("service %s: port %d bound to %q, want 127.0.0.1 only", tt.service, tt.port, pc.HostIP)
		}
	}
}

func TestComposeApps(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	postgres := service(t, p, "postgres")
	mysqlSvc := service(t, p, "mysql")

	for _, tt := range []struct {
		name, addrVar string
		port          int
		database      string
	}{
		{"flight", "FLIGHTBOOK_FLIGHT_HTTP_ADDR", 8081, "postgres"},
		{"booking", "FLIGHTBOOK_BOOKING_HTTP_ADDR", 8082, "mysql"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := service(t, p, tt.name)

			// Built from the repository's Dockerfile; the image's entrypoint is the binary,
			// the command its subcommand.
			if s.Build == nil || s.Build.Context != p.WorkingDir {
				t.Errorf("not built from the repository root's Dockerfile: %+v", s.Build)
			}
			if len(s.Command) != 1 || s.Command[0] != tt.name {
				t.Errorf("command %q, want [%s]", s.Command, tt.name)
			}
			if !s.ReadOnly {
				t.Error("root filesystem is writable; the service writes nothing there")
			}

			// Start order: its own database and the broker, healthy. Not the other
			// service's database: the services share nothing but JetStream.
			want := []string{tt.database, "nats"}
			var got []string
			for dep, d := range s.DependsOn {
				got = append(got, dep)
				if d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: condition %q, want %s", dep, d.Condition, types.ServiceConditionHealthy)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("depends_on %v, want %v", got, want)
			}

			// The listen address, the published port and the health check agree.
			_, port, err := net.SplitHostPort(env(t, s, tt.addrVar))
			if err != nil || port != strconv.Itoa(tt.port) {
				t.Errorf("%s = %q, want port %d", tt.addrVar, env(t, s, tt.addrVar), tt.port)
			}
			probe := strings.Join(s.HealthCheck.Test, " ")
			if !strings.Contains(probe, "/healthcheck") || !strings.Contains(probe, ":"+port+"/readyz") {
				t.Errorf("health check %q does not probe /readyz on port %s with the image's /healthcheck", probe, port)
			}

			// Shared settings.
			if got := env(t, s, "FLIGHTBOOK_NATS_URL"); got != "nats://nats:4222" {
				t.Errorf("FLIGHTBOOK_NATS_URL = %q, want nats://nats:4222", got)
			}
			if got := env(t, s, "FLIGHTBOOK_STREAMS_REPLICAS"); got != "1" {
				t.Errorf("FLIGHTBOOK_STREAMS_REPLICAS = %q, want 1 (one NATS server)", got)
			}
			// auth.New refuses secrets shorter than 16 bytes.
			if secret := env(t, s, "FLIGHTBOOK_AUTH_SECRET"); len(secret) < 16 {
				t.Errorf("FLIGHTBOOK_AUTH_SECRET %q is too short to start the service", secret)
			}
			env(t, s, "FLIGHTBOOK_LOG_LEVEL")

			// The DSN parses with the driver the service uses and names the credentials and
			// database the database container creates.
			switch tt.database {
			case "postgres":
				cfg, err := pgx.ParseConfig(env(t, s, "FLIGHTBOOK_POSTGRES_URL"))
				if err != nil {
					t.Fatalf("FLIGHTBOOK_POSTGRES_URL: %v", err)
				}
				got := []string{cfg.Host, strconv.Itoa(int(cfg.Port)), cfg.User, cfg.Password, cfg.Database}
				want := []string{"postgres", "5432", env(t, postgres, "POSTGRES_USER"),
					env(t, postgres, "POSTGRES_PASSWORD"), env(t, postgres, "POSTGRES_DB")}
				if !slices.Equal(got, want) {
					t.Errorf("FLIGHTBOOK_POSTGRES_URL has host, port, user, password, db %q; the postgres service has %q", got, want)
				}
			case "mysql":
				cfg, err := mysql.ParseDSN(env(t, s, "FLIGHTBOOK_MYSQL_DSN"))
				if err != nil {
					t.Fatalf("FLIGHTBOOK_MYSQL_DSN: %v", err)
				}
				got := []string{cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName}
				want := []string{"tcp", "mysql:3306", env(t, mysqlSvc, "MYSQL_USER"),
					env(t, mysqlSvc, "MYSQL_PASSWORD"), env(t, mysqlSvc, "MYSQL_DATABASE")}
				if !slices.Equal(got, want) {
					t.Errorf("FLIGHTBOOK_MYSQL_DSN has net, addr, user, password, db %q; the mysql service has %q", got, want)
				}
				// The booking store scans DATETIME columns into time.Time.
				if !cfg.ParseTime {
					t.Error("FLIGHTBOOK_MYSQL_DSN lacks parseTime=true")
				}
			}
		})
	}

	// One image for both services.
	if f, b := service(t, p, "flight"), service(t, p, "booking"); f.Image != b.Image {
		t.Errorf("flight runs image %q, booking %q: want one image", f.Image, b.Image)
	}
}

// TestComposeNATS checks that the broker runs the single-node config, that the config syncs
// every write, and that JetStream's store is on the named volume.
func TestComposeNATS(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	s := service(t, p, "nats")

	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 >= len(s.Command) {
		t.Fatalf("nats command %q does not name a config file", s.Command)
	}
	configPath := s.Command[i+1]
	j := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == configPath })
	if j < 0 {
		t.Fatalf("nothing is mounted at %s, the config the command names", configPath)
	}
	mount := s.Volumes[j]
	want := filepath.Join(p.WorkingDir, "deployments", "nats", "single-node.conf")
	if mount.Type != types.VolumeTypeBind || mount.Source != want || !mount.ReadOnly {
		t.Errorf("config mount %+v, want %s bound read-only", mount, want)
	}

	opts, err := server.ProcessConfigFile(mount.Source)
	if err != nil {
		t.Fatalf("%s: %v", mount.Source, err)
	}
	if !opts.JetStream || !opts.SyncAlways {
		t.Errorf("%s: jetstream %v, sync always %v; want both", mount.Source, opts.JetStream, opts.SyncAlways)
	}
	data := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && strings.HasPrefix(opts.StoreDir+"/", strings.TrimSuffix(v.Target, "/")+"/")
	})
	if data < 0 {
		t.Errorf("JetStream store_dir %s is not on a named volume", opts.StoreDir)
	}
	// The health check asks the monitoring port the config opens.
	probe := strings.Join(s.HealthCheck.Test, " ")
	i = strings.Index(probe, "http://")
	if i < 0 {
		t.Fatalf("health check %q asks no URL", probe)
	}
	hc, err := url.Parse(strings.Fields(probe[i:])[0])
	if err != nil || hc.Port() != strconv.Itoa(opts.HTTPPort) || hc.Path != "/healthz" {
		t.Errorf("health check %q does not ask /healthz on the monitoring port %d", probe, opts.HTTPPort)
	}
}
