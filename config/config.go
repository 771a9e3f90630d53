// Package config loads a service's settings from the environment with envconfig.
//
// Every setting is a struct field with a default that works on a developer machine and a
// desc tag; Usage prints them all, so `flightbook <cmd> --help` is the reference.
package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the prefix of every environment variable flightbook reads.
const Prefix = "FLIGHTBOOK"

// Load fills spec from the environment. envconfig's own "required key missing" error names
// the field without the prefix, so the error is wrapped with the full variable name.
func Load(spec any) error {
	if err := envconfig.Process(Prefix, spec); err != nil {
		return fmt.Errorf("config (variables start with %s_): %w", Prefix, err)
	}
	return nil
}

// Usage writes every variable spec reads, with its type, default and description.
func Usage(w io.Writer, spec any) error {
	const format = `{{range .}}  {{usage_key .}}	{{usage_type .}}	default {{if usage_default .}}{{usage_default .}}{{else}}(empty){{end}}	{{usage_description .}}
{{end}}`
	return envconfig.Usagef(Prefix, spec, tabWriter{w}, format)
}

// tabWriter aligns envconfig's tab-separated usage lines into columns.
type tabWriter struct{ w io.Writer }

func (t tabWriter) Write(p []byte) (int, error) {
	lines := strings.Split(strings.TrimRight(string(p), "\n"), "\n")
	for _, l := range lines {
		if _, err := fmt.Fprintln(t.w, strings.ReplaceAll(l, "\t", "  ")); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
