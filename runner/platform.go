// Package runner plans and executes an experiment: it brings a platform up,
// starts the workloads, deploys each (mesh, mode) in turn, drives the load,
// samples resource use, and writes every finished trial to the results
// directory (raw fortio data, SMPS documents) as soon as it ends.
//
// Platforms live in sub-packages (runner/local); the caller picks one and
// passes it in. Reports and comparisons are package reports' job.
package runner

import (
	"context"
	"io"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
)

// Platform provides nodes and runs processes on them.
type Platform interface {
	// Up creates one node per name and returns them by name.
	Up(ctx context.Context, names []string) (map[string]meshes.Node, error)
	// Start starts a process on a node. The process is stopped by Down if
	// the caller does not stop it first.
	Start(ctx context.Context, spec ProcessSpec) (Process, error)
	// Down stops every process and removes every resource Up and Start
	// created, in reverse order. It is safe to call more than once.
	Down(ctx context.Context) error
	// Describe says what the platform is, for the run manifest.
	Describe() results.Platform
}

// Interceptor is implemented by platforms that can redirect a node's
// traffic to a proxy (Describe().Transparent says whether it can now).
type Interceptor interface {
	// Intercept installs the rules and returns a function that removes
	// them. Down removes rules still installed.
	Intercept(ctx context.Context, rules []meshes.Redirect) (undo func(context.Context) error, err error)
}

// ProcessSpec is a process to start on a node.
type ProcessSpec struct {
	// Name identifies the process in logs and errors.
	Name string
	// Node is the node to run on.
	Node string
	// Command is an executable; empty runs the meshbench binary itself.
	Command string
	Args    []string
	// Stdout and Stderr receive the process's output.
	Stdout, Stderr io.Writer
	// CPUs, when set, pins the process (taskset list syntax, e.g. "1").
	CPUs string
}

// Process is a started process.
type Process interface {
	// Pid is the process id, in the host's PID namespace.
	Pid() int
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Err is the process's exit error once Done is closed.
	Err() error
	// Stop asks the process to exit (SIGTERM) and kills it (SIGKILL) when
	// ctx ends first. It returns once the process is gone.
	Stop(ctx context.Context) error
}

// Logger receives the runner's progress lines.
type Logger interface {
	Logf(format string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}
