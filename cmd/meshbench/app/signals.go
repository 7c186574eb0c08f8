package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ExitForced is the exit code when a second interrupt cuts teardown short.
const ExitForced = 130

// InterruptContext returns a context cancelled by the first SIGINT or
// SIGTERM, so that a run tears down in order. A second signal exits at
// once; the next run removes whatever that left behind.
func InterruptContext(parent context.Context, errOut io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(errOut, "meshbench: second %s: exiting without teardown; the next run removes what is left\n", s)
			os.Exit(ExitForced)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
