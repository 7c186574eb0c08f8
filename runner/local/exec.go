package local

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// executor runs external commands (ip, iptables). It is a seam for tests of
// the command sequences; the platform's own tests use the real one.
type executor interface {
	Run(ctx context.Context, name string, args ...string) (string, error)
}

// RunError is a failed command with its command line and output.
type RunError struct {
	Command []string
	Output  string
	Err     error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("command %q failed: %v: %s", strings.Join(e.Command, " "), e.Err, strings.TrimSpace(e.Output))
}

func (e *RunError) Unwrap() error { return e.Err }

type execRunner struct{}

func (execRunner) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), &RunError{Command: append([]string{name}, args...), Output: out.String(), Err: err}
	}
	return out.String(), nil
}
