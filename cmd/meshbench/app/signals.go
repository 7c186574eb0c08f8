package app

import (
	"context"
	"io"

	"github.com/meshbench/meshbench/cmd/internal/role"
)

// ExitForced is the exit code when a second interrupt cuts teardown short.
const ExitForced = role.ExitForced

// InterruptContext returns a context cancelled by the first SIGINT or
// SIGTERM, so that a run tears down in order. A second signal exits at
// once; the next run removes whatever that left behind.
func InterruptContext(parent context.Context, errOut io.Writer) (context.Context, func()) {
	return role.InterruptContext(parent, errOut, "meshbench")
}
