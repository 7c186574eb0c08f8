// Command meshbench benchmarks, conformance-tests and chaos-tests service
// meshes. See `meshbench --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, app.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(app.ExitCode(err))
}
