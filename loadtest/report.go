package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run: throughput, latencies, errors, and the verification.
type Report struct {
	Scenario       string    `json:"scenario"`
	Clients        int       `json:"clients"`
	Rate           float64   `json:"target_rate,omitempty"`
	Started        time.Time `json:"started"`
	Elapsed        Seconds   `json:"elapsed_s"` // the load phase, without setup and verification
	Operations     int64     `json:"operations"`
	Requests       int64     `json:"requests"`
	Failures       int64     `json:"failures"`
	RequestsPerSec float64   `json:"requests_per_s"`
	// BookingsPerSec counts bookings the booking service accepted (200 or 202 to a POST).
	BookingsAccepted int64   `json:"bookings_accepted"`
	BookingsPerSec   float64 `json:"bookings_accepted_per_s"`
	// SettledAfter is how long after the load began the tool first saw none of the run's
	// bookings PENDING (it polls, so this is late by up to one round of polling), and
	// BookingsDecidedPerSec is BookingsAccepted over it. A pipeline that accepts POSTs fast and
	// decides them later shows a high BookingsPerSec and a low BookingsDecidedPerSec. Zero when
	// bookings were still PENDING at the end of the wait.
	SettledAfter          Seconds `json:"settled_after_s,omitempty"`
	BookingsDecidedPerSec float64 `json:"bookings_decided_per_s,omitempty"`

	Endpoints []EndpointStats `json:"endpoints"`
	Saga      []Latency       `json:"saga,omitempty"`
	Errors    []ErrorCount    `json:"errors"`
	// ScheduleLag is how late operations started behind the --rate schedule: when it grows,
	// the clients could not keep up and the latencies understate what users would see.
	ScheduleLag *Latency `json:"schedule_lag,omitempty"`

	Bookings map[string]int `json:"bookings_by_status"`
	// UnknownOutcomes counts booking requests whose outcome could not be learned even after
	// the run (the tool asks again with the same Idempotency-Key); any fails the run.
	UnknownOutcomes int             `json:"unknown_outcomes"`
	Flights         []FlightCheck   `json:"flights"`
	Oversold        int             `json:"oversold"`
	Services        []ServiceStatus `json:"services"`
	Chaos           *ChaosReport    `json:"chaos,omitempty"`
	CPU             []ProcessCPU    `json:"cpu,omitempty"`

	// Verified is false when the run stopped before the verification could finish.
	Verified   bool     `json:"verified"`
	Violations []string `json:"violations"`
}

// OK reports whether the run was verified and every invariant held.
func (r Report) OK() bool { return r.Verified && len(r.Violations) == 0 }

// ServiceStatus is what a service's /readyz said about its queues, if anything.
type ServiceStatus struct {
	Service string `json:"service"`
	// Available is false when /readyz had no outbox or dead-letter figures; the checks below
	// were then not possible.
	Available bool               `json:"available"`
	Outbox    map[string]float64 `json:"outbox,omitempty"`
	DLQBefore map[string]float64 `json:"dlq_before,omitempty"`
	DLQAfter  map[string]float64 `json:"dlq_after,omitempty"`
	Note      string             `json:"note,omitempty"`
}

// ChaosReport says what the chaos step did.
type ChaosReport struct {
	KilledAt  Seconds `json:"killed_at_s"`
	StartedAt Seconds `json:"started_at_s,omitempty"`
	// Recovered is how long after the start command both services answered /healthz.
	Recovered Seconds  `json:"recovered_after_s,omitempty"`
	Skipped   string   `json:"skipped,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// Seconds is a duration written as seconds in JSON and reports.
type Seconds float64

func secondsOf(d time.Duration) Seconds { return Seconds(d.Seconds()) }

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes r as the tables a person reads at the end of a run.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rate := ""
	if r.Rate > 0 {
		rate = fmt.Sprintf(", target %.0f/s", r.Rate)
	}
	fmt.Fprintf(&b, "scenario %s, %d clients%s: %d operations, %d requests in %.1fs\n",
		r.Scenario, r.Clients, rate, r.Operations, r.Requests, float64(r.Elapsed))
	fmt.Fprintf(&b, "throughput  %.1f requests/s, %.1f bookings accepted/s (%d accepted), %d failed requests\n",
		r.RequestsPerSec, r.BookingsPerSec, r.BookingsAccepted, r.Failures)
	if r.SettledAfter > 0 {
		fmt.Fprintf(&b, "settled     no booking PENDING %.1fs after the load began: %.1f bookings decided/s\n",
			float64(r.SettledAfter), r.BookingsDecidedPerSec)
	}
	if len(r.CPU) > 0 {
		var all, perBooking float64
		var parts []string
		for _, c := range r.CPU {
			if c.ProcessesAtEnd == 0 {
				continue // not running here (mysqld where MariaDB runs, say)
			}
			parts = append(parts, fmt.Sprintf("%s %.1fs (%.2f ms)", c.Name, c.Seconds, c.MsPerBooking))
			all += c.Seconds
			perBooking += c.MsPerBooking
		}
		fmt.Fprintf(&b, "cpu         %.1fs, %.2f ms per booking accepted: %s\n", all, perBooking, strings.Join(parts, ", "))
	}
	b.WriteString("\n")

	// Names are padded to one width so they read left-aligned while the figures align right,
	// and every section lines up with the others.
	nameW := len("endpoint")
	for _, e := range r.Endpoints {
		nameW = max(nameW, len(e.Name))
	}
	for _, l := range r.Saga {
		nameW = max(nameW, len(l.Name))
	}
	for _, e := range r.Errors {
		nameW = max(nameW, len(e.Endpoint))
	}
	name := func(s string) string { return fmt.Sprintf("%-*s", nameW, s) }
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	latencyTable := func(title string, rows []Latency, errs []int64) {
		head := name(title) + "\tcount\tp50 ms\tp95 ms\tp99 ms\tmax ms\t"
		if errs != nil {
			head += "errors\t"
		}
		fmt.Fprintln(tw, head)
		for i, l := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t", name(l.Name), l.Count, l.P50, l.P95, l.P99, l.Max)
			if errs != nil {
				fmt.Fprintf(tw, "%d\t", errs[i])
			}
			fmt.Fprintln(tw)
		}
		fmt.Fprintln(tw)
	}
	rows, errs := make([]Latency, len(r.Endpoints)), make([]int64, len(r.Endpoints))
	for i, e := range r.Endpoints {
		rows[i], errs[i] = e.Latency, e.Errors
	}
	latencyTable("endpoint", rows, errs)
	if len(r.Saga) > 0 {
		latencyTable("saga", r.Saga, nil)
	}
	if r.ScheduleLag != nil {
		latencyTable("schedule", []Latency{*r.ScheduleLag}, nil)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(tw, name("error")+"\tstatus\tcode\tcount\t")
		for _, e := range r.Errors {
			status := fmt.Sprint(e.Status)
			if e.Status == 0 {
				status = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t\n", name(e.Endpoint), status, e.Code, e.Count)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}

	var statuses []string
	for _, s := range slices.Sorted(maps.Keys(r.Bookings)) {
		statuses = append(statuses, fmt.Sprintf("%s %d", s, r.Bookings[s]))
	}
	if len(statuses) == 0 {
		statuses = []string{"none"}
	}
	fmt.Fprintf(&b, "bookings    %s", strings.Join(statuses, ", "))
	if r.UnknownOutcomes > 0 {
		fmt.Fprintf(&b, "; %d of unknown outcome", r.UnknownOutcomes)
	}
	fmt.Fprintln(&b)

	fmt.Fprintln(&b)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flight\ttotal\tavailable\theld\tsold\tbooked held\tbooked confirmed\toversold\tok\t")
	for _, f := range r.Flights {
		ok := "yes"
		if len(f.Violations) > 0 {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", f.FlightID, f.Total, f.Available, f.Held, f.Sold,
			f.BookedHeld, f.BookedConfirmed, f.Oversold, ok)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(&b, "\noversold    %d seats\n", r.Oversold)

	for _, s := range r.Services {
		if !s.Available {
			fmt.Fprintf(&b, "%-11s outbox and DLQ figures not available%s\n", s.Service, noteSuffix(s.Note))
			continue
		}
		fmt.Fprintf(&b, "%-11s outbox %s; DLQ before %s, after %s%s\n", s.Service,
			figures(s.Outbox), figures(s.DLQBefore), figures(s.DLQAfter), noteSuffix(s.Note))
	}
	if c := r.Chaos; c != nil {
		if c.Skipped != "" {
			fmt.Fprintf(&b, "chaos       skipped: %s\n", c.Skipped)
		} else {
			fmt.Fprintf(&b, "chaos       killed at %.1fs, started at %.1fs, healthy %.1fs later\n",
				float64(c.KilledAt), float64(c.StartedAt), float64(c.Recovered))
		}
		for _, e := range c.Errors {
			fmt.Fprintf(&b, "chaos       error: %s\n", e)
		}
	}

	switch {
	case !r.Verified:
		fmt.Fprintln(&b, "\nNOT VERIFIED: the run stopped before the invariants could be checked")
	case len(r.Violations) == 0:
		fmt.Fprintln(&b, "\nPASS: every invariant held")
	default:
		fmt.Fprintf(&b, "\nFAIL: %d invariant violation(s)\n", len(r.Violations))
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func figures(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%g", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func noteSuffix(note string) string {
	if note == "" {
		return ""
	}
	return " (" + note + ")"
}
