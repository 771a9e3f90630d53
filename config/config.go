// Package config loads a service's settings from the environment with envconfig.
//
// Every setting is a struct field with a default that works on a developer machine and a
// desc tag; Usage prints them all, so `flightbook <cmd> --help` is the reference.
package config

import (
	"fmt"
	"io"
	"text/tabwriter"

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
	const format = `{{range .}}  {{usage_key .}}	{{usage_type .}}	{{if usage_default .}}{{usage_default .}}{{else}}(empty){{end}}	{{usage_description .}}
{{end}}`
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION")
	if err := envconfig.Usagef(Prefix, spec, tw, format); err != nil {
		return err
	}
	return tw.Flush()
}

// Markdown writes every variable spec reads as the rows of a Markdown table (variable,
// default, description), for the README's configuration reference.
func Markdown(w io.Writer, spec any) error {
	const format = `{{range .}}| ` + "`{{usage_key .}}`" + ` | {{if usage_default .}}` + "`{{usage_default .}}`" + `{{end}} | {{usage_description .}} |
{{end}}`
	fmt.Fprintln(w, "| Variable | Default | Description |")
	fmt.Fprintln(w, "|---|---|---|")
	return envconfig.Usagef(Prefix, spec, w, format)
}
