package main

import (
	"context"
	"errors"
	"io"
)

// runFlight wires and runs the flight service. (Being built: issue 2.)
func runFlight(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("flight: not built yet")
}
