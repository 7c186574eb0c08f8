package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/runner/kind/images"
)

// newClusterCommand groups what the kind platform needs on this machine:
// images today; the clusters themselves as they land.
func newClusterCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Images (and, as the kind platform lands, clusters) for the kind platform",
		Args:  argsCheck(cobra.NoArgs),
	}
	cmd.AddCommand(newBuildImageCommand(s))
	return cmd
}

type buildImageOptions struct {
	binary, output string
}

func newBuildImageCommand(s Streams) *cobra.Command {
	o := &buildImageOptions{}
	cmd := &cobra.Command{
		Use:   "build-image",
		Short: "Build meshbench's image (the static binary, every role) and load it into Docker, or write it to a file",
		Long: `Builds the image that runs every meshbench role on Kubernetes, without a
Dockerfile, a build daemon or a registry: one layer holding the static
meshbench binary. With --output the image is written as a 'docker save'
archive (what 'docker load' and 'kind load image-archive' read); without,
it is loaded into the local Docker engine.`,
		Args: argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), s) },
	}
	f := cmd.Flags()
	f.StringVar(&o.binary, "binary", "", "the meshbench binary to put in the image (default: this one; it must be static, as make build makes it)")
	f.StringVarP(&o.output, "output", "o", "", "write the image archive to this file instead of loading it into Docker")
	return cmd
}

func (o *buildImageOptions) run(ctx context.Context, s Streams) error {
	bin := o.binary
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the meshbench binary: %w", err)
		}
		bin = self
	} else if _, err := os.Stat(bin); err != nil {
		return badInput(fmt.Errorf("--binary: %w", err))
	}
	if err := images.CheckStatic(bin); err != nil {
		return badInput(err)
	}
	img, err := images.Meshbench(bin, version)
	if err != nil {
		return err
	}
	ref := images.Ref(version)
	write := func(w io.Writer) error { return images.WriteArchive(w, map[string]images.Image{ref: img}) }
	if o.output != "" {
		if err := writeFileAtomic(o.output, write); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "%s written to %s\n", ref, o.output)
		return nil
	}
	out, err := images.LoadDocker(ctx, write)
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Out, out)
	return nil
}

// writeFileAtomic writes a file through write, under a temporary name
// renamed into place once complete.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".meshbench-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
