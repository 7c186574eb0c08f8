package app

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/runner/kind/ociruntime"
)

// newOCIRuntimeCommand is the runtime wrapper scripts/engine.sh registers
// with dockerd on hosts whose capability bounding set lacks what Docker
// asks for privileged containers. dockerd calls it with runc's arguments.
func newOCIRuntimeCommand(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:                "oci-runtime [--missing | -- RUNC-ARGS...]",
		Short:              "Run runc without the capabilities this host cannot grant (registered with dockerd)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			missing, err := ociruntime.Missing()
			if err != nil {
				return err
			}
			if len(args) == 1 && args[0] == "--missing" {
				if len(missing) > 0 {
					fmt.Fprintln(s.Out, strings.Join(missing, ","))
				}
				return nil
			}
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			runc, err := ociruntime.FindRunc()
			if err != nil {
				return err
			}
			return ociruntime.Exec(runc, args, missing)
		},
	}
}
