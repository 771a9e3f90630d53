package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/flightbook/flightbook/auth"
	"github.com/flightbook/flightbook/config"
)

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id (the sub claim); required")
	role := fs.String("role", "", `role claim; "admin" may change the catalogue and read any booking`)
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flightbook token --user U [--role admin] [--ttl 24h]\n\nPrints a bearer token signed with FLIGHTBOOK_AUTH_SECRET.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		fs.Usage()
		return fmt.Errorf("token: --user is required")
	}
	var cfg struct{ Auth auth.Config }
	if err := config.Load(&cfg); err != nil {
		return err
	}
	a, err := auth.New(cfg.Auth, nil)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := a.Token(*user, *role, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
