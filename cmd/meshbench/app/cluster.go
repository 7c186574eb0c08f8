package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"

	"github.com/meshbench/meshbench/runner/kind"
	"github.com/meshbench/meshbench/runner/kind/images"
	"github.com/meshbench/meshbench/runner/kind/nodeimage"
)

// newClusterCommand groups what the kind platform needs on this machine:
// the clusters and the images they run.
func newClusterCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "kind clusters for meshbench, and the images they run",
		Args:  argsCheck(cobra.NoArgs),
	}
	cmd.AddCommand(newClusterCreateCommand(s), newClusterDeleteCommand(s), newClusterListCommand(s), newClusterKubeconfigCommand(s), newClusterTopCommand(s),
		newBuildImageCommand(s), newBuildNodeImageCommand(s))
	return cmd
}

// defaultCluster is the cluster a command means when none is named.
const defaultCluster = "default"

// namedCluster is the cluster a command names, once an engine answers.
func namedCluster(ctx context.Context, args []string) (string, error) {
	name, err := clusterName(args)
	if err != nil {
		return "", err
	}
	return name, engineAnswers(ctx)
}

func clusterName(args []string) (string, error) {
	name := defaultCluster
	if len(args) > 0 {
		name = strings.TrimPrefix(args[0], kind.Prefix)
	}
	if err := kind.ValidName(name); err != nil {
		return "", badInput(err)
	}
	return name, nil
}

type clusterCreateOptions struct {
	workers             int
	nodeImage, cacheDir string
	kubeconfig          string
	retain              bool
	wait                time.Duration
	shares              []string
}

func newClusterCreateCommand(s Streams) *cobra.Command {
	o := &clusterCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create a kind cluster for meshbench (named meshbench-NAME; default meshbench-default)",
		Long: `Creates a kind cluster: one control-plane node and --workers workers, the first
labelled ` + kind.RoleLabel + `=` + kind.RoleLoadGen + ` (the load generator runs there), the others
` + kind.RoleLabel + `=` + kind.RoleSUT + `. A cluster that exists is kept: its pod network is
re-applied and its readiness checked again (a killed create leaves one half set up).

Each cluster's pod range (a /20 of 10.128.0.0/10) and service range (a /22 of
10.112.0.0/12) come from a hash of its name, so that this host can route to
clusters side by side; a name that would give a new cluster the ranges of
another meshbench cluster is refused (exit 2) before anything is made.

--node-image auto takes kind's upstream node image (pinned by digest) on
cgroup v2 hosts, and on cgroup v1 hosts, where that Kubernetes version's
kubelet refuses to run, the offline node image (see build-node-image; built
or loaded from the cache).`,
		Args: argsCheck(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), s, args) },
	}
	f := cmd.Flags()
	f.IntVar(&o.workers, "workers", 2, "worker nodes (at least 2: the load generator's and the system under test's)")
	f.StringVar(&o.nodeImage, "node-image", "auto", "auto, offline (build-node-image), upstream (kind's default), or an image reference")
	f.StringVar(&o.cacheDir, "cache-dir", nodeimage.DefaultCacheDir(), "the offline node image's cache")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "write the cluster's kubeconfig here (default: kind's, $KUBECONFIG or ~/.kube/config)")
	f.BoolVar(&o.retain, "retain", false, "keep the nodes when creation fails, for debugging")
	f.DurationVar(&o.wait, "wait", 3*time.Minute, "how long to wait for every node to be Ready")
	f.StringSliceVar(&o.shares, "share", nil, "host directory every node mounts at the same path (repeatable): run --platform kind --cluster needs one holding its results directory")
	return cmd
}

func (o *clusterCreateOptions) run(ctx context.Context, s Streams, args []string) error {
	name, err := clusterName(args)
	if err != nil {
		return err
	}
	if o.workers < 2 {
		return badInput(fmt.Errorf("--workers %d: want at least 2", o.workers))
	}
	if o.wait <= 0 {
		return badInput(fmt.Errorf("--wait %s: want a positive duration", o.wait))
	}
	log := &progress{w: s.ErrOut}
	if err := engineAnswers(ctx); err != nil {
		return err
	}
	if err := kind.RangesFree(name, log); err != nil {
		if errors.Is(err, kind.ErrRangesTaken) {
			return badInput(err)
		}
		return err
	}
	var shares []string
	for _, d := range o.shares {
		abs, err := filepath.Abs(d)
		if err != nil {
			return badInput(fmt.Errorf("--share %s: %v", d, err))
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return badInput(fmt.Errorf("--share %s: not a directory", d))
		}
		shares = append(shares, abs)
	}
	image, err := o.image(ctx, s, log)
	if err != nil {
		return err
	}
	created, err := kind.Create(ctx, kind.ClusterOptions{Name: name, Workers: o.workers, Image: image, Retain: o.retain,
		Kubeconfig: o.kubeconfig, ReadyTimeout: o.wait, Shares: shares, Log: log})
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(s.Out, "cluster %s created\n", kind.FullName(name))
	} else {
		fmt.Fprintf(s.Out, "cluster %s exists\n", kind.FullName(name))
	}
	return nil
}

// image resolves --node-image.
func (o *clusterCreateOptions) image(ctx context.Context, _ Streams, log *progress) (string, error) {
	return nodeImage(ctx, o.nodeImage, o.cacheDir, log)
}

// nodeImage resolves a --node-image value: auto, offline, upstream or a
// reference.
func nodeImage(ctx context.Context, spec, cacheDir string, log *progress) (string, error) {
	switch spec {
	case "upstream":
		return defaults.Image, nil
	case "auto":
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			return defaults.Image, nil
		}
		log.Logf("cgroup v1 host: the offline node image (Kubernetes %s; kind's default refuses cgroup v1)", nodeimage.Default.Kubernetes)
		fallthrough
	case "offline":
		b := &nodeimage.Builder{Versions: nodeimage.Default, CacheDir: cacheDir, Log: log.Logf, Output: io.Discard}
		return b.Build(ctx)
	case "":
		return "", badInput(errors.New("--node-image: empty"))
	}
	return spec, nil
}

// missingCluster is the error for a cluster that is not there (or whose
// existence could not be learned).
func missingCluster(name string, err error) error {
	if err != nil {
		return fmt.Errorf("cluster %s: %w", kind.FullName(name), err)
	}
	return badInput(fmt.Errorf("no meshbench cluster %s (see meshbench cluster list)", kind.FullName(name)))
}

// engineAnswers checks for a Docker engine, which kind needs.
func engineAnswers(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return badInput(errors.New("the kind platform needs Docker: no docker command (scripts/engine.sh installs and starts one)"))
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return badInput(fmt.Errorf("the kind platform needs a Docker engine, and none answers (scripts/engine.sh starts one): %s", strings.TrimSpace(string(out))))
	}
	return nil
}

func newClusterDeleteCommand(s Streams) *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "delete [NAME]",
		Short: "Delete a meshbench kind cluster (deleting one that does not exist is not an error)",
		Args:  argsCheck(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := namedCluster(cmd.Context(), args)
			if err != nil {
				return err
			}
			if err := kind.Delete(name, kubeconfig, &progress{w: s.ErrOut}); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "cluster %s deleted\n", kind.FullName(name))
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "the kubeconfig to remove the cluster from (default: kind's)")
	return cmd
}

func newClusterListCommand(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List meshbench's kind clusters",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := engineAnswers(cmd.Context()); err != nil {
				return err
			}
			names, err := kind.List(&progress{w: s.ErrOut})
			if err != nil {
				return err
			}
			if len(names) == 0 {
				fmt.Fprintln(s.ErrOut, "no meshbench clusters")
			}
			for _, n := range names {
				fmt.Fprintln(s.Out, n)
			}
			return nil
		},
	}
}

func newClusterKubeconfigCommand(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "kubeconfig [NAME]",
		Short: "Print a meshbench kind cluster's kubeconfig",
		Args:  argsCheck(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := namedCluster(cmd.Context(), args)
			if err != nil {
				return err
			}
			if ok, err := kind.Exists(name, &progress{w: s.ErrOut}); err != nil || !ok {
				return missingCluster(name, err)
			}
			cfg, err := kind.Kubeconfig(name, &progress{w: s.ErrOut})
			if err != nil {
				return fmt.Errorf("cluster %s: %w", kind.FullName(name), err)
			}
			fmt.Fprint(s.Out, cfg)
			return nil
		},
	}
}

type buildNodeImageOptions struct {
	cacheDir, mirror string
	verbose          bool
}

func newBuildNodeImageCommand(s Streams) *cobra.Command {
	o := &buildNodeImageOptions{}
	v := nodeimage.Default
	cmd := &cobra.Command{
		Use:   "build-node-image",
		Short: "Build a kind node image offline (Debian packages, Kubernetes from the Go module proxy) into Docker",
		Long: fmt.Sprintf(`Builds a kind node image without a registry: a Debian %s root filesystem
(debootstrap), kind %s's node files, Kubernetes %s, etcd %s, CoreDNS %s and
pause built from the Go module proxy, every image kubeadm needs preloaded.
Every stage is cached under --cache-dir by version; the finished image is
kept there as an archive a fresh Docker engine loads in seconds. Cold, the
Go builds take tens of minutes of CPU.

On machines with a registry, kind's upstream node image is the usual choice;
this build is for air-gapped machines and CI.`, v.Debian, v.Kind, v.Kubernetes, v.Etcd, v.CoreDNS),
		Args: argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), s) },
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheDir, "cache-dir", nodeimage.DefaultCacheDir(), "where the stages and finished images are kept")
	f.StringVar(&o.mirror, "mirror", "", "Debian mirror for debootstrap (default: the host's apt sources)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print the build commands' output (it is always kept in the cache's build log)")
	return cmd
}

func (o *buildNodeImageOptions) run(ctx context.Context, s Streams) error {
	if err := os.MkdirAll(filepath.Join(o.cacheDir, "build"), 0o755); err != nil {
		return badInput(fmt.Errorf("--cache-dir: %w", err))
	}
	logPath := filepath.Join(o.cacheDir, "build", "node-image.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var out io.Writer = logFile
	if o.verbose {
		out = io.MultiWriter(logFile, s.ErrOut)
	}
	log := &progress{w: s.ErrOut}
	b := &nodeimage.Builder{Versions: nodeimage.Default, CacheDir: o.cacheDir, Mirror: o.mirror, Log: log.Logf, Output: out}
	log.Logf("node image %s (build log: %s)", b.Ref(), logPath)
	ref, err := b.Build(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Out, ref)
	return nil
}

type buildImageOptions struct {
	binary, output, cluster, cacheDir string
	reference                         bool
}

func newBuildImageCommand(s Streams) *cobra.Command {
	o := &buildImageOptions{}
	cmd := &cobra.Command{
		Use:   "build-image",
		Short: "Build meshbench's image (the static binary, every role) and the reference proxies' (HAProxy, nginx), into Docker, a cluster or a file",
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
	f.StringVar(&o.cluster, "cluster", "", "load the image into this meshbench kind cluster's nodes instead of Docker")
	f.BoolVar(&o.reference, "reference", true, "also the reference data planes' image (HAProxy and nginx from Debian's packages; debootstrap, as root)")
	f.StringVar(&o.cacheDir, "cache-dir", nodeimage.DefaultCacheDir(), "where the reference image's root filesystem is kept")
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
	// The images are tagged with the binary's version, as its runs tag
	// them (a kube run of it looks for its own tag).
	ver := version
	if o.binary != "" {
		v, err := binaryVersion(ctx, bin)
		if err != nil {
			return badInput(fmt.Errorf("--binary: %w", err))
		}
		ver = v
	}
	img, err := images.Meshbench(bin, ver)
	if err != nil {
		return err
	}
	ref := images.Ref(ver)
	imgs := map[string]images.Image{ref: img}
	if o.reference {
		b := &nodeimage.Builder{Versions: nodeimage.Default, CacheDir: o.cacheDir, Log: (&progress{w: s.ErrOut}).Logf, Output: io.Discard}
		rref, rimg, err := b.ReferenceImage(ctx)
		if err != nil {
			return fmt.Errorf("the reference proxies' image: %w (--reference=false builds meshbench's alone)", err)
		}
		imgs[rref] = rimg
		// The image runs on kind and kube run (their companion binaries
		// included, when beside bin and the same build).
		pi, err := podImageOf(rimg, bin, ver, &progress{w: s.ErrOut})
		if err != nil {
			return err
		}
		imgs[pi.ref] = pi.img
		ref += ", " + rref + " and " + pi.ref
	}
	write := func(w io.Writer) error { return images.WriteArchive(w, imgs) }
	if o.output != "" && o.cluster != "" {
		return badInput(errors.New("--output and --cluster: choose one"))
	}
	if o.cluster != "" {
		name, err := clusterName([]string{o.cluster})
		if err != nil {
			return err
		}
		log := &progress{w: s.ErrOut}
		if ok, err := kind.Exists(name, log); err != nil || !ok {
			return missingCluster(name, err)
		}
		if err := kind.LoadImages(name, write, log); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "%s loaded into cluster %s\n", ref, kind.FullName(name))
		return nil
	}
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

// binaryVersion is the version a meshbench binary says it is (its
// version command's second word).
func binaryVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 2 || f[0] != "meshbench" {
		return "", fmt.Errorf("%s does not say its version as meshbench does (%q, %v)", bin, strings.TrimSpace(string(out)), err)
	}
	return f[1], nil
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

type clusterTopOptions struct {
	namespace string
	window    time.Duration
}

func newClusterTopCommand(s Streams) *cobra.Command {
	o := &clusterTopOptions{}
	cmd := &cobra.Command{
		Use:   "top [NAME]",
		Short: "CPU and memory of a namespace's running containers over a window, from the kubelets (no metrics-server)",
		Long: `Reads every node's kubelet summary API through the API server's node proxy,
as meshbench's kind platform does for its results: CPU is the change of each
container's CPU time between the first and last samples the kubelet published
in the window (cAdvisor refreshes them every few seconds: use a window of 10s
or more), memory the working set and RSS sampled every second.`,
		Args: argsCheck(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := namedCluster(cmd.Context(), args)
			if err != nil {
				return err
			}
			if o.window <= 0 {
				return badInput(fmt.Errorf("--window %s: want a positive duration", o.window))
			}
			return o.run(cmd.Context(), s, name)
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "default", "the namespace whose pods to measure")
	cmd.Flags().DurationVar(&o.window, "window", 10*time.Second, "how long to measure")
	return cmd
}

func (o *clusterTopOptions) run(ctx context.Context, s Streams, name string) error {
	log := &progress{w: s.ErrOut}
	if ok, err := kind.Exists(name, log); err != nil || !ok {
		return missingCluster(name, err)
	}
	cfg, err := kind.Kubeconfig(name, log)
	if err != nil {
		return err
	}
	c, err := kind.NewClient([]byte(cfg))
	if err != nil {
		return err
	}
	cs, err := c.RunningContainers(ctx, o.namespace)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Fprintf(s.ErrOut, "no running containers in namespace %s\n", o.namespace)
		return nil
	}
	end := c.MeterUsage(ctx, cs, time.Second)
	select {
	case <-ctx.Done():
		end()
		return ctx.Err()
	case <-time.After(o.window):
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD/CONTAINER\tNODE\tCPU (m)\tWORKING SET MB (mean/max)\tRSS MB (mean/max)")
	for _, u := range end() {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f/%.1f\t%.1f/%.1f\n", u.Name, u.Host, u.CPUMillicores, u.WorkingSetMeanMB, u.WorkingSetMaxMB, u.RSSMeanMB, u.RSSMaxMB)
	}
	return tw.Flush()
}
