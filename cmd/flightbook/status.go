package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flightbook/flightbook/consumer"
	"github.com/flightbook/flightbook/events"
	"github.com/flightbook/flightbook/outbox"
	"github.com/flightbook/flightbook/status"
)

// messagingStatus is a service's /readyz detail: its outbox, durable consumers and dead
// letters, then whatever extend adds (nil for nothing).
func messagingStatus(js jetstream.JetStream, relay *outbox.Relay, router *consumer.Router, topo events.Topology, service string, extend func(*status.Report)) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		r, err := status.Collect(ctx, status.Source{
			JS: js, Relay: relay, Routes: router.Routes(),
			Namespace: topo.Namespace, Service: service, DLQStream: topo.StreamName(events.StreamDLQ),
		})
		if extend != nil {
			extend(&r)
		}
		return r, err
	}
}

// runStatus prints both services' readiness and messaging figures from their /readyz.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flightURL := fs.String("flight-url", "http://127.0.0.1:8081", "flight service base URL")
	bookingURL := fs.String("booking-url", "http://127.0.0.1:8082", "booking service base URL")
	asJSON := fs.Bool("json", false, "print the services' /readyz documents as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flightbook status [--flight-url U] [--booking-url U] [--json]\n\nShows each service's readiness, outbox backlog, durable consumers (lag, unacked, redelivered) and dead letters.\nExits 1 when a service is not ready or cannot be reached.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	docs := map[string]readyDoc{}
	var failed []string
	for _, svc := range []struct{ name, url string }{{"flight", *flightURL}, {"booking", *bookingURL}} {
		d, err := fetchReady(ctx, client, strings.TrimSuffix(svc.url, "/")+"/readyz")
		if err != nil {
			d.Status = "unreachable: " + err.Error()
		}
		if d.Status != "ok" {
			failed = append(failed, svc.name)
		}
		docs[svc.name] = d
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(docs); err != nil {
			return err
		}
	} else {
		printStatus(stdout, docs)
	}
	if len(failed) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(failed, ", "))
	}
	return nil
}

// readyDoc is a service's /readyz answer.
type readyDoc struct {
	Status      string            `json:"status"`
	Checks      map[string]string `json:"checks"`
	Detail      *status.Report    `json:"detail,omitempty"`
	DetailError string            `json:"detail_error,omitempty"`
}

func fetchReady(ctx context.Context, client *http.Client, url string) (readyDoc, error) {
	var d readyDoc
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return d, err
	}
	res, err := client.Do(req)
	if err != nil {
		return d, err
	}
	defer res.Body.Close()
	// 503 still carries the document, naming what is wrong.
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
		return d, fmt.Errorf("GET %s: %s: decode: %w", url, res.Status, err)
	}
	return d, nil
}

func printStatus(w io.Writer, docs map[string]readyDoc) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tREADY\tOUTBOX PENDING\tOUTBOX LAG\tRELAY LEADER\tDLQ")
	for _, name := range []string{"flight", "booking"} {
		d := docs[name]
		ready := d.Status
		for check, res := range d.Checks {
			if res != "ok" {
				ready += fmt.Sprintf(" (%s: %s)", check, res)
			}
		}
		if d.Detail == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", name, ready)
			continue
		}
		r := d.Detail
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1fs\t%v\t%d\n", name, ready, r.Outbox.Pending, r.Outbox.LagSeconds, r.Outbox.Leader, r.DLQ.Count)
	}
	fmt.Fprintln(tw, "\nSERVICE\tROUTE\tSTREAM\tPENDING\tUNACKED\tREDELIVERED\tDLQ")
	for _, name := range []string{"flight", "booking"} {
		d := docs[name]
		if d.Detail == nil {
			continue
		}
		for _, c := range d.Detail.Consumers {
			if c.Error != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\terror: %s\t\t\t\n", name, c.Route, c.Stream, c.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", name, c.Route, c.Stream, c.Pending, c.AckPending, c.Redelivered, d.Detail.DLQ.ByRoute[c.Route])
		}
	}
	_ = tw.Flush()
}
