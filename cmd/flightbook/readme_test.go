package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/flightbook/flightbook/config"
)

// TestREADMEConfigReference checks the README's configuration reference against the config
// structs, so a new or changed setting cannot be missing from it. Regenerate it with
// FLIGHTBOOK_UPDATE_README=1 go test -run TestREADMEConfigReference ./cmd/flightbook/
func TestREADMEConfigReference(t *testing.T) {
	const path = "../../README.md"
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	for _, sec := range []struct {
		name string
		spec any
	}{
		{"flight", &flightConfig{}},
		{"booking", &bookingConfig{}},
	} {
		var table bytes.Buffer
		if err := config.Markdown(&table, sec.spec); err != nil {
			t.Fatal(err)
		}
		begin, end := "<!-- config:"+sec.name+" -->\n", "<!-- /config:"+sec.name+" -->"
		i, j := strings.Index(text, begin), strings.Index(text, end)
		if i < 0 || j < i {
			t.Fatalf("README lacks the %q ... %q markers", strings.TrimSpace(begin), end)
		}
		current := text[i+len(begin) : j]
		if current == table.String() {
			continue
		}
		if os.Getenv("FLIGHTBOOK_UPDATE_README") == "1" {
			text = text[:i+len(begin)] + table.String() + text[j:]
			continue
		}
		t.Errorf("the README's %s settings differ from `flightbook %s --help`; regenerate with FLIGHTBOOK_UPDATE_README=1 go test -run TestREADMEConfigReference ./cmd/flightbook/", sec.name, sec.name)
	}
	if os.Getenv("FLIGHTBOOK_UPDATE_README") == "1" && text != string(readme) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
