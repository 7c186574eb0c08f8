// Command meshbench-proxy is meshbench's proxy role alone: what
// `meshbench proxy` runs, in a binary that links nothing else, so that a
// proxy process carries none of the rest of meshbench's memory. The
// platforms start it, with the same arguments as `meshbench proxy`
// (`meshbench-proxy proxy --ads ...`), where it sits beside the meshbench
// binary; see package role.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/cmd/internal/role"
)

func main() {
	root := &cobra.Command{
		Use:           "meshbench-proxy",
		Short:         "meshbench's proxy, alone (started by meshbench's platforms)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return role.BadInput(err) })
	root.AddCommand(role.NewProxyCommand(os.Stdout, os.Stderr))
	// SIGTERM drains the proxy (its Run returns when the context ends); a
	// second one exits at once.
	ctx, stop := role.InterruptContext(context.Background(), os.Stderr, "meshbench-proxy")
	err := root.ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "meshbench-proxy: %v\n", err)
	var bad *role.BadInputError
	if errors.As(err, &bad) {
		os.Exit(2)
	}
	os.Exit(1)
}
