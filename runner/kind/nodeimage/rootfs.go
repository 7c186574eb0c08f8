package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// packages are the Debian packages of a node, as kind's base image has
// them: systemd to run the node, the container runtime, the CNI plugins,
// and what kubelet, kubeadm and kube-proxy call (iptables, conntrack,
// mount, ...).
var packages = []string{
	"systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
	"iptables", "nftables", "iproute2", "conntrack", "ethtool", "util-linux", "mount", "kmod", "ebtables",
	"libseccomp2", "ca-certificates", "procps", "socat", "bash", "jq", // jq: kind's mount-product-files.sh hook
}

// rootfs debootstraps (or finds in the cache) the node's root filesystem
// and returns its directory; callers copy it before changing it.
func (b *Builder) rootfs(ctx context.Context) (string, error) {
	return b.debootstrap(ctx, "rootfs", packages)
}

// debootstrap makes (or finds in the cache) a minimal Debian root
// filesystem with pkgs, in a stage named after name and the package list.
func (b *Builder) debootstrap(ctx context.Context, name string, pkgs []string) (string, error) {
	sum := sha256.Sum256([]byte(b.Debian + " " + strings.Join(pkgs, ",") + " upgraded"))
	dir := filepath.Join(b.CacheDir, "build", name+"-"+b.Debian+"-"+hex.EncodeToString(sum[:])[:10])
	if done(dir) {
		b.Log("%s: cached in %s", name, dir)
		return filepath.Join(dir, "rootfs"), nil
	}
	// Only a build needs it: a cache copied to a host without it serves.
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap is needed to build images offline (apt-get install debootstrap; make test installs it)")
	}
	unmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	mirror := b.Mirror
	if mirror == "" {
		mirror = HostMirror()
	}
	b.Log("%s: debootstrap %s from %s", name, b.Debian, mirror)
	if err := b.run(ctx, dir, nil, "debootstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","),
		b.Debian, "rootfs", mirror); err != nil {
		return "", err
	}
	root := filepath.Join(dir, "rootfs")
	// debootstrap takes the suite alone; the host's updates and security
	// archives too, so that the packages are the host's builds (HAProxy
	// and nginx compare the same binaries on both platforms).
	if err := b.upgrade(ctx, root); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	// Package caches are not part of an image.
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "var/lib/apt/lists/*_Release*"} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
	b.Log("%s: done in %s", name, time.Since(start).Round(time.Second))
	return root, markDone(dir)
}

// upgrade points the root filesystem's apt at the host's sources and
// upgrades it, as one chroot'd apt run.
func (b *Builder) upgrade(ctx context.Context, root string) error {
	copied := false
	for _, src := range []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d/debian.sources"} {
		data, err := os.ReadFile(src)
		if err != nil {
			continue
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(src)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, src), data, 0o644); err != nil {
			return err
		}
		copied = true
	}
	if !copied {
		b.Log("no Debian apt sources on the host: %s keeps the suite's packages", root)
		return nil
	}
	return b.run(ctx, "", []string{"DEBIAN_FRONTEND=noninteractive"}, "chroot", root, "/bin/sh", "-c",
		"apt-get update -qq && apt-get upgrade -y -qq --no-install-recommends && apt-get clean")
}

// customize turns a copy of the Debian root filesystem into a kind node:
// kind's node files, Debian's paths mapped to the ones kind's files use,
// systemd set up as kind's base image sets it up, the Kubernetes binaries
// and version, and containerd's runtime spec.
func (b *Builder) customize(ctx context.Context, root string, bins map[string]string) error {
	kindDir, err := moduleDir(ctx, "sigs.k8s.io/kind@"+b.Kind)
	if err != nil {
		return err
	}
	files := filepath.Join(kindDir, "images", "base", "files")
	if err := copyTree(files, root); err != nil {
		return fmt.Errorf("kind's node files: %w", err)
	}
	for _, dir := range []string{"usr/local/bin", "kind/bin"} {
		entries, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range entries {
			_ = os.Chmod(filepath.Join(root, dir, e.Name()), 0o755)
		}
	}
	// kind's units and scripts expect containerd, ctr and the shim in
	// /usr/local/bin, runc in /usr/local/sbin, CNI plugins in /opt/cni/bin.
	links := map[string]string{
		"usr/local/bin/containerd":              "/usr/bin/containerd",
		"usr/local/bin/ctr":                     "/usr/bin/ctr",
		"usr/local/bin/containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
		"usr/local/sbin/runc":                   "/usr/sbin/runc",
		"sbin/init":                             "/lib/systemd/systemd",
	}
	for link, target := range links {
		p := filepath.Join(root, link)
		_ = os.Remove(p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "opt/cni/bin"), 0o755); err != nil {
		return err
	}
	plugins, _ := os.ReadDir(filepath.Join(root, "usr/lib/cni"))
	for _, p := range plugins {
		l := filepath.Join(root, "opt/cni/bin", p.Name())
		_ = os.Remove(l)
		if err := os.Symlink("/usr/lib/cni/"+p.Name(), l); err != nil {
			return err
		}
	}
	// systemd as kind's base image has it: no units but the ones it
	// enables, no kernel log in the journal.
	for _, glob := range []string{
		"lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*",
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
	if err := appendFile(filepath.Join(root, "etc/systemd/journald.conf"), "ReadKMsg=no\n"); err != nil {
		return err
	}
	for _, unit := range []string{"kubelet.service", "containerd.service", "undo-mount-hacks.service"} {
		if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755); err != nil {
			return err
		}
		l := filepath.Join(root, "etc/systemd/system/multi-user.target.wants", unit)
		_ = os.Remove(l)
		if err := os.Symlink("/etc/systemd/system/"+unit, l); err != nil {
			return err
		}
	}
	mask := filepath.Join(root, "etc/systemd/system/systemd-binfmt.service")
	_ = os.Remove(mask)
	if err := os.Symlink("/dev/null", mask); err != nil {
		return err
	}
	// Debian's containerd package enables its own unit under /lib; kind's
	// in /etc takes precedence.
	for _, dir := range []string{"etc/kubernetes/manifests", "kind/manifests", "etc/cni/net.d", "var/lib/kubelet"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return err
		}
	}
	// This host cannot set a negative oom_score_adj (no CAP_SYS_RESOURCE),
	// and containerd gives pod sandboxes -998: restrict it, as kind does
	// for rootless nodes.
	cfgPath := filepath.Join(root, "etc/containerd/config.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	if !strings.Contains(string(cfg), "restrict_oom_score_adj = false") {
		return fmt.Errorf("%s: no restrict_oom_score_adj setting to turn on (kind %s's file changed?)", cfgPath, b.Kind)
	}
	cfg = []byte(strings.Replace(string(cfg), "restrict_oom_score_adj = false", "restrict_oom_score_adj = true", 1))
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	if err := b.criBaseSpec(ctx, root); err != nil {
		return err
	}
	for _, c := range []string{"kubeadm", "kubelet", "kubectl"} {
		if err := copyFile(bins[c], filepath.Join(root, "usr/bin", c), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "kind/version"), []byte(b.Kubernetes), 0o644); err != nil {
		return err
	}
	// A storage class, so that kind's storage step has its manifest here
	// (its default names images from a registry).
	return os.WriteFile(filepath.Join(root, "kind/manifests/default-storage.yaml"), []byte(storageManifest), 0o644)
}

const storageManifest = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
`

// criBaseSpec writes containerd's base runtime spec as kind's base image
// does: `ctr oci spec` (run in the root filesystem), with kind's
// product-files hook added and the rlimits removed.
func (b *Builder) criBaseSpec(ctx context.Context, root string) error {
	out, err := exec.CommandContext(ctx, "chroot", root, "/usr/bin/ctr", "oci", "spec").Output()
	if err != nil {
		return fmt.Errorf("ctr oci spec in the node's root: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		return fmt.Errorf("ctr oci spec: %w", err)
	}
	hooks, _ := spec["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
		spec["hooks"] = hooks
	}
	cc, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(cc, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	if proc, ok := spec["process"].(map[string]any); ok {
		delete(proc, "rlimits")
	}
	data, err := json.MarshalIndent(spec, "", "    ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/containerd/cri-base.json"), data, 0o644)
}

// moduleDir is a module's directory in the Go module cache, downloaded
// from the module proxy when missing.
func moduleDir(ctx context.Context, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	var res struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s", modVersion, err, res.Error)
	}
	return res.Dir, nil
}

// copyTree copies the regular files and directories under src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(path, target, 0o644)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	_ = os.Remove(dst)
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
