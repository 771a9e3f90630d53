package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsConfig is how a service reaches JetStream.
type natsConfig struct {
	URL       string `default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	Namespace string `default:"" desc:"optional prefix for every stream and subject, so several deployments can share one NATS server"`
}

// logDisconnect logs a lost connection as a warning. nats.go passes no error when it closes the
// connection; the reason, if any (no server left, an auth error), is the connection's last
// error. Without one the connection was closed on purpose, as at every shutdown: nothing to
// warn about.
func logDisconnect(log *slog.Logger) nats.ConnErrHandler {
	return func(c *nats.Conn, err error) {
		if err == nil {
			err = c.LastError()
		}
		if err == nil {
			log.Debug("nats connection closed")
			return
		}
		log.Warn("nats disconnected", "error", err)
	}
}

// connectNATS connects with unlimited reconnects: a broker restart must never need a service
// restart. Outgoing messages wait in the outbox while the connection is down.
func connectNATS(ctx context.Context, url, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// The outbox relay needs publishes that fail while disconnected to fail, not to wait
		// in a buffer and be sent after later ones (see outbox.NewPostgresRelay).
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(logDisconnect(log)),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats async error", "subject", subject, "error", err)
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	// Wait for the first connection so start-up errors are clear rather than a silent retry loop.
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			nc.Close()
			return nil, nil, fmt.Errorf("connect to NATS at %s: not reachable after 10s", url)
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nc, js, nil
}

// natsReady is the /readyz check for the NATS connection.
func natsReady(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}
}

// startEmbeddedNATS runs a real JetStream server inside the process, storing under dir; the
// dev mode uses it so that nothing but Go is needed to try flightbook.
func startEmbeddedNATS(dir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "flightbook-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		// Sync every write, as the production configs do; dev volumes are tiny.
		SyncAlways: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	return ns, nil
}
