// Package nodeimage builds a kind node image offline: a Debian root
// filesystem (debootstrap from the host's mirror, with systemd,
// containerd, runc and the CNI plugins), kind's node files from its Go
// module, and Kubernetes, etcd, CoreDNS and pause built from the Go module
// proxy, with every image the node needs preloaded into its containerd
// under the names kubeadm expects.
//
// `kind build node-image` cannot do this offline: it fetches the images
// it did not build from a registry inside the build container. This
// builder assembles the image the way kind's does (a container from the
// base root filesystem, images imported and pinned, committed with kind's
// entrypoint) and caches every stage by version: the Go builds (tens of
// minutes of CPU cold), the root filesystem, and the finished image as a
// `docker save` archive that a fresh engine loads in seconds.
package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Versions pins everything a node image holds.
type Versions struct {
	// Kubernetes is k8s.io/kubernetes's version; its staging modules are
	// pinned to the matching v0 version. v1.34 is the newest whose kubelet
	// runs on cgroup v1 hosts by default.
	Kubernetes string `json:"kubernetes"`
	// Etcd is go.etcd.io/etcd/server/v3's version and EtcdTag the image
	// tag kubeadm asks for with this Kubernetes.
	Etcd    string `json:"etcd"`
	EtcdTag string `json:"etcdTag"`
	CoreDNS string `json:"coredns"`
	// PauseTags are the pause image's tags: kubeadm's and the one kind's
	// containerd configuration names as the sandbox image.
	PauseTags []string `json:"pauseTags"`
	// Debian is the suite of the root filesystem.
	Debian string `json:"debian"`
	// Kind is the sigs.k8s.io/kind module whose node files (entrypoint,
	// units, containerd configuration) the image carries.
	Kind string `json:"kind"`
}

// Default is what `meshbench cluster build-node-image` builds: the
// versions kubeadm v1.34.4 asks for.
var Default = Versions{
	Kubernetes: "v1.34.4",
	Etcd:       "v3.6.5", EtcdTag: "3.6.5-0",
	CoreDNS:   "v1.12.1",
	PauseTags: []string{"3.10.1", "3.10"},
	Debian:    "bookworm",
	Kind:      "v0.33.0",
}

// revision changes whenever the build itself changes what it makes, so
// that a cached image of an older build is not reused.
const revision = 3

// Repository names the node images this package builds.
const Repository = "meshbench.local/kind-node"

// Key identifies a build: the Kubernetes version and a digest of every
// pinned version and the builder's revision.
func (v Versions) Key() string {
	data, _ := json.Marshal(struct {
		Versions
		Packages []string
		Revision int
	}{v, packages, revision})
	sum := sha256.Sum256(data)
	return v.Kubernetes + "-" + hex.EncodeToString(sum[:])[:10]
}

// Ref is the node image's reference.
func (v Versions) Ref() string { return Repository + ":" + v.Key() }

// Builder builds node images.
type Builder struct {
	Versions
	// CacheDir holds the stages: build/ (Go builds, root filesystems)
	// and images/ (finished node images as archives).
	CacheDir string
	// Mirror is the Debian mirror debootstrap uses.
	Mirror string
	// Log receives progress lines; Output the commands' output.
	Log    func(format string, args ...any)
	Output io.Writer
}

// DefaultCacheDir is /var/cache/meshbench for root, else the user's cache.
func DefaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/meshbench"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "meshbench")
	}
	return filepath.Join(os.TempDir(), "meshbench-cache")
}

// Build makes the node image available in the local Docker engine and
// returns its reference: already there, loaded from the cache, or built.
func (b *Builder) Build(ctx context.Context) (string, error) {
	ref := b.Ref()
	if b.Log == nil {
		b.Log = func(string, ...any) {}
	}
	if b.Output == nil {
		b.Output = io.Discard
	}
	if dockerHas(ctx, ref) {
		b.Log("node image %s: in the engine already", ref)
		return ref, nil
	}
	archive := filepath.Join(b.CacheDir, "images", b.Key()+".tar")
	if _, err := os.Stat(archive); err == nil {
		b.Log("node image %s: loading the cached archive %s", ref, archive)
		if err := b.run(ctx, "", nil, "docker", "load", "-i", archive); err != nil {
			return "", err
		}
		return ref, nil
	}
	start := time.Now()
	// One build at a time per cache; what a killed build left (its work
	// directory, build container) goes first.
	unlock, err := lockCache(filepath.Join(b.CacheDir, "build"))
	if err != nil {
		return "", err
	}
	defer unlock()
	b.removeLeftovers(ctx)
	bins, err := b.binaries(ctx)
	if err != nil {
		return "", err
	}
	rootfs, err := b.rootfs(ctx)
	if err != nil {
		return "", err
	}
	work := filepath.Join(b.CacheDir, "build", "node-work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := b.assemble(ctx, work, rootfs, bins, ref); err != nil {
		return "", err
	}
	b.Log("node image %s: built in %s; saving it to %s", ref, time.Since(start).Round(time.Second), archive)
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", err
	}
	tmp := archive + ".partial"
	if err := b.run(ctx, "", nil, "docker", "save", "-o", tmp, ref); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, archive); err != nil {
		return "", err
	}
	b.prune(ctx, ref, bins, rootfs)
	return ref, nil
}

// prune removes what this build superseded (each is hundreds of MB):
// node images of other keys (the engine's and the cached archives) and
// stages of the same kinds with other keys.
func (b *Builder) prune(ctx context.Context, ref string, bins map[string]string, rootfs string) {
	out, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", Repository).Output()
	for _, r := range strings.Fields(string(out)) {
		if r != ref {
			b.Log("removing the superseded node image %s", r)
			_ = exec.CommandContext(ctx, "docker", "rmi", r).Run()
		}
	}
	archives, _ := filepath.Glob(filepath.Join(b.CacheDir, "images", "*.tar"))
	for _, a := range archives {
		if filepath.Base(a) != b.Key()+".tar" {
			_ = os.Remove(a)
		}
	}
	// A stage directory is <kind>-<version>-<digest>: the ones in use,
	// and others of their kinds.
	keep := map[string]bool{filepath.Base(filepath.Dir(rootfs)): true}
	for _, p := range bins {
		keep[filepath.Base(filepath.Dir(filepath.Dir(p)))] = true
	}
	kindOf := func(name string) string {
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			return name[:i]
		}
		return name
	}
	kinds := map[string]bool{}
	for k := range keep {
		kinds[kindOf(k)] = true
	}
	entries, _ := os.ReadDir(filepath.Join(b.CacheDir, "build"))
	for _, e := range entries {
		if e.IsDir() && !keep[e.Name()] && kinds[kindOf(e.Name())] {
			b.Log("removing the superseded stage %s", e.Name())
			removeStage(filepath.Join(b.CacheDir, "build", e.Name()))
		}
	}
}

// buildContainerPrefix names the containers a build runs.
const buildContainerPrefix = "meshbench-node-build-"

// lockCache takes an exclusive lock on dir's lock file.
func lockCache(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// removeLeftovers removes what a killed build left: its work directory
// (with any mounts a killed debootstrap left in it), stages that never
// finished, and its build containers.
func (b *Builder) removeLeftovers(ctx context.Context) {
	build := filepath.Join(b.CacheDir, "build")
	entries, _ := os.ReadDir(build)
	for _, e := range entries {
		dir := filepath.Join(build, e.Name())
		if e.IsDir() && (e.Name() == "node-work" || !done(dir)) {
			b.Log("removing %s, left by an unfinished build", dir)
			removeStage(dir)
		}
	}
	out, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "name="+buildContainerPrefix).Output()
	for _, id := range strings.Fields(string(out)) {
		_ = exec.CommandContext(ctx, "docker", "rm", "--force", "--volumes", id).Run()
	}
	partial, _ := filepath.Glob(filepath.Join(b.CacheDir, "images", "*.partial"))
	for _, p := range partial {
		_ = os.Remove(p)
	}
}

// removeStage removes a stage directory, after what is mounted in it: a
// root filesystem can hold a killed debootstrap's /proc and /sys.
func removeStage(dir string) {
	unmountUnder(dir)
	_ = os.RemoveAll(dir)
}

// unmountUnder lazily unmounts every mount point below dir, deepest
// first (debootstrap mounts /proc and /sys in its target, and a killed
// debootstrap leaves them).
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// run runs a command in dir with extra environment, its output to the
// builder's Output; the error carries the end of that output.
func (b *Builder) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	return b.command(ctx, dir, env, nil, name, args...)
}

// runIn is run with stdin.
func (b *Builder) runIn(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	return b.command(ctx, "", nil, stdin, name, args...)
}

func (b *Builder) command(ctx context.Context, dir string, env []string, stdin io.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	// On a cancel, SIGTERM first: debootstrap unmounts what it mounted in
	// its target when it is let to.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Dir, cmd.Stdin = dir, stdin
	cmd.Env = append(os.Environ(), env...)
	tail := &tailBuffer{max: 2048}
	cmd.Stdout = io.MultiWriter(b.Output, tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(tail.String()))
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

func dockerHas(ctx context.Context, ref string) bool {
	return exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil
}

// done reports whether a stage directory was completed (its marker file
// exists); markDone completes it.
func done(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".meshbench-done"))
	return err == nil
}

func markDone(dir string) error {
	return os.WriteFile(filepath.Join(dir, ".meshbench-done"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// HostMirror is the first Debian mirror in the host's apt sources, or
// deb.debian.org.
func HostMirror() string {
	var files []string
	files = append(files, "/etc/apt/sources.list")
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			var url string
			if rest, ok := strings.CutPrefix(line, "URIs:"); ok {
				url = strings.TrimSpace(rest)
			} else if f := strings.Fields(line); len(f) >= 3 && f[0] == "deb" {
				url = f[1]
				if strings.HasPrefix(url, "[") {
					url = f[2]
				}
			}
			// Debian's own archive, not its security archive or a
			// third party's repository.
			if strings.HasPrefix(url, "http") && strings.HasSuffix(strings.TrimSuffix(strings.Fields(url)[0], "/"), "/debian") {
				return strings.Fields(url)[0]
			}
		}
	}
	return "http://deb.debian.org/debian"
}
