// Command meshbench benchmarks, conformance-tests and chaos-tests service
// meshes. See `meshbench --help`.
package main

import (
	"context"
	"os"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
)

func main() {
	streams := app.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	ctx, stop := app.InterruptContext(context.Background(), streams.ErrOut)
	err := app.Run(ctx, streams, os.Args[1:])
	stop()
	os.Exit(app.ExitCode(err))
}
