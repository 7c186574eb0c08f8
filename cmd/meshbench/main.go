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
	if len(os.Args) > 1 && os.Args[1] == "pod-process" {
		// The process wrapper handles SIGTERM and SIGINT itself (it
		// passes them on and reports the exit however many come):
		// meshbench's interrupt handling would exit at the second with no
		// report, or cancel a context the wrapper does not watch.
		os.Exit(app.ExitCode(app.Run(context.Background(), streams, os.Args[1:])))
	}
	ctx, stop := app.InterruptContext(context.Background(), streams.ErrOut)
	err := app.Run(ctx, streams, os.Args[1:])
	stop()
	os.Exit(app.ExitCode(err))
}
