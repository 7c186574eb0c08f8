package app

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/kind"
	"github.com/meshbench/meshbench/runner/kind/images"
	"github.com/meshbench/meshbench/runner/kind/nodeimage"
	"github.com/meshbench/meshbench/runner/local"
	"github.com/meshbench/meshbench/scenarios"
)

// platformFlags choose and configure the platform.
type platformFlags struct {
	name, network, subnet string
	// The kind platform's.
	cluster, nodeImage, cacheDir string
	keepCluster                  bool
	// The kube platform's.
	kubeconfig, kubeContext string
	// kindOK says the command can run on kind and kube.
	kindOK bool
	flags  *pflag.FlagSet
}

// Platforms meshbench knows, by --platform name.
const (
	platformLocal = "local"
	platformKind  = "kind"
	platformKube  = "kube"
)

// onlyOn are the flags that apply to some platforms only.
var onlyOn = map[string][]string{
	"network": {platformLocal}, "subnet": {platformLocal},
	"cluster": {platformKind}, "keep-cluster": {platformKind}, "node-image": {platformKind},
	"cache-dir":  {platformKind, platformKube},
	"kubeconfig": {platformKube}, "context": {platformKube},
}

// onPods says the chosen platform runs the nodes as pods.
func (p *platformFlags) onPods() bool { return p.name == platformKind || p.name == platformKube }

func (p *platformFlags) bind(f *pflag.FlagSet) {
	p.flags = f
	f.StringVar(&p.name, "platform", "", "where the workloads run: local (network namespaces on this host), kind or kube (default: the scenario's platform, else local)")
	f.StringVar(&p.network, "network", local.Auto, "local platform network: auto, netns (root) or loopback")
	f.StringVar(&p.subnet, "subnet", local.DefaultSubnet.String(), "private IPv4 range to take node addresses from (netns network)")
	if !p.kindOK {
		return
	}
	f.StringVar(&p.cluster, "cluster", "", "kind: run on this meshbench cluster (it must share a directory holding --out: cluster create --share); default: create one for the run")
	f.BoolVar(&p.keepCluster, "keep-cluster", false, "kind: keep the cluster the run creates")
	f.StringVar(&p.nodeImage, "node-image", "auto", "kind: the node image of the cluster the run creates (as cluster create's)")
	f.StringVar(&p.cacheDir, "cache-dir", nodeimage.DefaultCacheDir(), "kind, kube: the image cache (node and reference images)")
	f.StringVar(&p.kubeconfig, "kubeconfig", "", "kube: the cluster's kubeconfig file (default: $KUBECONFIG, else ~/.kube/config); the cluster must hold the pods' image, mount --out on its nodes at the same path, and be routed from this host to its pods")
	f.StringVar(&p.kubeContext, "context", "", "kube: the kubeconfig context to use (default: its current context)")
}

// choose sets the scenario's platform from --platform and checks that
// this meshbench can run it; sc is nil where no scenario names one.
func (p *platformFlags) choose(sc *scenarios.Scenario) error {
	name := p.name
	if sc != nil {
		if p.flags.Changed("platform") {
			sc.Platform = p.name
			sc.Override("platform", "platform")
		}
		name = sc.Platform
	}
	fail := func(format string, args ...any) error {
		if sc != nil {
			return sc.FieldError("platform", format, args...)
		}
		return fmt.Errorf("--platform: "+format, args...)
	}
	switch name {
	case "", platformLocal:
		p.name = platformLocal
	case platformKind:
		if !p.kindOK {
			return fail("this command runs on the local platform only in this build (use --platform local)")
		}
		p.name = platformKind
	case platformKube:
		if !p.kindOK {
			return fail("this command runs on the local platform only in this build (use --platform local)")
		}
		p.name = platformKube
	default:
		return fail("unknown platform %q (known: %s)", name, strings.Join(scenarios.Platforms, ", "))
	}
	for _, f := range slices.Sorted(maps.Keys(onlyOn)) {
		plats := onlyOn[f]
		if p.flags.Lookup(f) != nil && p.flags.Changed(f) && !slices.Contains(plats, p.name) {
			which := plats[0] + " platform"
			if len(plats) > 1 {
				which = strings.Join(plats, " and ") + " platforms"
			}
			return fmt.Errorf("--%s applies to the %s only (the platform is %s)", f, which, p.name)
		}
	}
	for _, f := range []string{"keep-cluster", "node-image"} {
		if p.name == platformKind && p.cluster != "" && p.flags.Changed(f) {
			return fmt.Errorf("--%s applies to the cluster a run creates, not to one named with --cluster", f)
		}
	}
	if p.name == platformKind && p.cluster != "" {
		if err := kind.ValidName(strings.TrimPrefix(p.cluster, kind.Prefix)); err != nil {
			return fmt.Errorf("--cluster: %w", err)
		}
	}
	return nil
}

// platformRun is what a platform needs of the run.
type platformRun struct {
	runID, outDir string
	// loadGen are the nodes the load generator runs on.
	loadGen []string
	// together maps the nodes that run on a shared one to it.
	together map[string]string
	// replicas maps each replicated service to its pods' nodes.
	replicas map[string][]string
}

// create makes the chosen platform (nothing is started yet).
func (p *platformFlags) create(ctx context.Context, r platformRun, log *progress) (runner.Platform, error) {
	switch p.name {
	case platformKind:
		return p.kind(ctx, r, log)
	case platformKube:
		return p.kube(ctx, r, log)
	}
	return p.local(ctx, r.runID, log)
}

// local creates the local platform (nothing is started yet).
func (p *platformFlags) local(ctx context.Context, runID string, log *progress) (runner.Platform, error) {
	subnet, err := netip.ParsePrefix(p.subnet)
	if err != nil {
		return nil, badInput(fmt.Errorf("invalid --subnet %q: %v", p.subnet, err))
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the meshbench binary: %w", err)
	}
	plat, err := local.New(ctx, local.Options{RunID: runID, Network: p.network, Subnet: subnet, Self: self, Proxy: proxyBinary(self, log), Log: log})
	if err != nil && errors.Is(err, local.ErrInvalidOptions) {
		return nil, badInput(err)
	}
	return plat, err
}

// kind creates the kind platform: it checks the engine, the cluster and
// the binary, and builds the image the pods run. Nothing is created in
// a cluster yet.
func (p *platformFlags) kind(ctx context.Context, r platformRun, log *progress) (runner.Platform, error) {
	if os.Geteuid() != 0 {
		return nil, badInput(errors.New("--platform kind needs root: it routes this host to the pods (ip route) and keeps its state in " + local.DefaultStateDir()))
	}
	if err := engineAnswers(ctx); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the meshbench binary: %w", err)
	}
	if err := images.CheckStatic(self); err != nil {
		return nil, badInput(fmt.Errorf("--platform kind runs this meshbench binary in pods: %w", err))
	}
	share, err := filepath.Abs(r.outDir)
	if err != nil {
		return nil, err
	}
	o := kind.PlatformOptions{RunID: r.runID, Share: share, LoadGen: r.loadGen, Together: r.together, Replicas: r.replicas, StateDir: local.DefaultStateDir(), Keep: p.keepCluster, Log: log}
	if p.cluster != "" {
		name := strings.TrimPrefix(p.cluster, kind.Prefix)
		if ok, err := kind.Exists(name, log); err != nil || !ok {
			return nil, missingCluster(name, err)
		}
		o.Cluster = name
		if err := kind.Answers(ctx, name, 10*time.Second, log); err != nil {
			if errors.Is(err, kind.ErrNoAnswer) {
				return nil, badInput(fmt.Errorf("--cluster: %w", err))
			}
			return nil, err
		}
		if err := kind.CheckShared(name, share, log); err != nil {
			if errors.Is(err, kind.ErrNotShared) {
				return nil, badInput(fmt.Errorf("--out %w", err))
			}
			return nil, err
		}
	} else {
		image, err := nodeImage(ctx, p.nodeImage, p.cacheDir, log)
		if err != nil {
			return nil, err
		}
		// Named for the run, with a suffix in the rare case another
		// cluster has the ranges that name would give it.
		if o.Cluster, err = kind.FreeName("run-"+r.runID, log); err != nil {
			return nil, err
		}
		o.Create = &kind.ClusterOptions{Name: o.Cluster, Workers: 2, Image: image, Log: log}
	}
	pi, err := buildPodImage(ctx, self, p.cacheDir, log)
	if err != nil {
		return nil, err
	}
	pi.set(&o)
	return kind.NewPlatform(ctx, o)
}

// kube creates the kube platform: it checks the kubeconfig and that the
// cluster answers, and builds the pods' image (to know its name: the
// nodes must hold it). Nothing is created in the cluster yet.
func (p *platformFlags) kube(ctx context.Context, r platformRun, log *progress) (runner.Platform, error) {
	if os.Geteuid() != 0 {
		return nil, badInput(errors.New("--platform kube needs root: it builds the pods' image on the reference proxies' root filesystem (debootstrap, cached in --cache-dir) and keeps its state in " + local.DefaultStateDir()))
	}
	flag := "--kubeconfig"
	if p.kubeContext != "" {
		flag = "--context"
	}
	target, err := kind.ResolveKube(kind.KubeTarget{Kubeconfig: p.kubeconfig, Context: p.kubeContext})
	if err != nil {
		return nil, badInput(fmt.Errorf("%s: %w", flag, err))
	}
	c, err := kind.KubeClient(target)
	if err != nil {
		return nil, badInput(fmt.Errorf("%s: %w", flag, err))
	}
	if err := kind.KubeAnswers(ctx, c, 10*time.Second); err != nil {
		return nil, badInput(fmt.Errorf("%s: cluster %s (%s): %w", flag, target.Cluster, target.Server, err))
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the meshbench binary: %w", err)
	}
	if err := images.CheckStatic(self); err != nil {
		return nil, badInput(fmt.Errorf("--platform kube runs this meshbench binary in pods: %w", err))
	}
	pi, err := buildPodImage(ctx, self, p.cacheDir, log)
	if err != nil {
		return nil, err
	}
	share, err := filepath.Abs(r.outDir)
	if err != nil {
		return nil, err
	}
	o := kind.PlatformOptions{RunID: r.runID, Kube: &target, Share: share, LoadGen: r.loadGen, Together: r.together, Replicas: r.replicas, StateDir: local.DefaultStateDir(), Log: log}
	pi.set(&o)
	return kind.NewPlatform(ctx, o)
}

// podImage is the image every container of a run on pods runs.
type podImage struct {
	ref            string
	img            images.Image
	proxy, wrapper bool
}

func (pi podImage) set(o *kind.PlatformOptions) {
	o.Image, o.Proxy, o.Wrapper = pi.ref, pi.proxy, pi.wrapper
	o.WriteImages = func(w io.Writer) error { return images.WriteArchive(w, map[string]images.Image{pi.ref: pi.img}) }
}

// buildPodImage builds the pods' image of the meshbench binary self: the
// reference proxies' image (cached) with self in it, and its companion
// binaries when they are beside it and the same build.
func buildPodImage(ctx context.Context, self, cacheDir string, log *progress) (podImage, error) {
	b := &nodeimage.Builder{Versions: nodeimage.Default, CacheDir: cacheDir, Log: log.Logf, Output: io.Discard}
	_, reference, err := b.ReferenceImage(ctx)
	if err != nil {
		return podImage{}, fmt.Errorf("the reference proxies' image (the pods' base): %w", err)
	}
	return podImageOf(reference, self, version, log)
}

// podImageOf is the pods' image of the meshbench binary self, of version
// ver, on the reference proxies' image.
func podImageOf(reference images.Image, self, ver string, log *progress) (podImage, error) {
	// The proxies run as meshbench-proxy, and every container's process
	// is wrapped by meshbench-pod-process, where they are beside this
	// binary and the same build: each container then spares the memory of
	// the rest of meshbench, which the kubelet would count as its own.
	extra := map[string]string{}
	for _, c := range []struct{ at, path string }{{images.ProxyPath, proxyBinary(self, log)}, {images.WrapperPath, wrapperBinary(self, log)}} {
		if c.path == "" {
			continue
		}
		if err := images.CheckStatic(c.path); err != nil {
			log.Logf("%s is left out of the pods' image: %v", filepath.Base(c.path), err)
			continue
		}
		log.Logf("the pods' image holds %s beside meshbench", filepath.Base(c.path))
		extra[c.at] = c.path
	}
	// Tagged by content: a cluster never runs another build of the same
	// version, and runs of the same build share the image.
	ref, img, err := nodeimage.InitImage(reference, self, extra, ver, true)
	if err != nil {
		return podImage{}, err
	}
	return podImage{ref: ref, img: img, proxy: extra[images.ProxyPath] != "", wrapper: extra[images.WrapperPath] != ""}, nil
}

// proxyBinary is meshbench-proxy beside self when it is the same build,
// or "" (the proxies then run as `meshbench proxy`, with more memory),
// said in the log.
func proxyBinary(self string, log *progress) string {
	return companion(self, meshes.ProxyCommand, "proxies run as meshbench proxy", "it spares each proxy the memory of the rest of meshbench", log)
}

// wrapperBinary is meshbench-pod-process beside self when it is the same
// build, or "" (kind containers are then wrapped by `meshbench
// pod-process`, which the kubelet counts with each), said in the log.
func wrapperBinary(self string, log *progress) string {
	return companion(self, podProcessCommand, "containers are wrapped by meshbench pod-process", "it spares each container the memory of the rest of meshbench", log)
}

// companion is the binary name beside self when it is the same build, or
// "" with the reason in the log after fallback (what runs instead); why
// says what the binary is for. Same build: the same module version and VCS
// stamp in both binaries' build information and, where the stamp says
// nothing of the sources (a modified tree, or no VCS), built after self,
// as make build builds them: a companion older than a meshbench built from
// edited sources may be stale.
func companion(self, name, fallback, why string, log *progress) string {
	path := filepath.Join(filepath.Dir(self), name)
	stamp := func(path string) (string, bool, error) {
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			return "", false, err
		}
		s, exact := bi.Main.Path+" "+bi.Main.Version, false
		for _, kv := range bi.Settings {
			if strings.HasPrefix(kv.Key, "vcs.") {
				s += " " + kv.Key + "=" + kv.Value
			}
			if kv.Key == "vcs.modified" {
				exact = kv.Value == "false"
			}
		}
		return s, exact, nil
	}
	want, exact, err := stamp(self)
	if err != nil {
		log.Logf("%s: this binary's build information: %v", fallback, err)
		return ""
	}
	got, _, err := stamp(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Logf("%s: no %s beside this binary (make build makes it; %s)", fallback, name, why)
		return ""
	case err != nil:
		log.Logf("%s: %s: %v", fallback, path, err)
		return ""
	case got != want:
		log.Logf("%s: %s is another build (%s; this binary: %s)", fallback, path, got, want)
		return ""
	}
	if !exact {
		a, errA := os.Stat(self)
		b, errB := os.Stat(path)
		if errA != nil || errB != nil || b.ModTime().Before(a.ModTime()) {
			log.Logf("%s: %s is older than this binary, built from modified sources: rebuild both (make build)", fallback, path)
			return ""
		}
	}
	return path
}
