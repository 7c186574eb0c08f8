package nodeimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/meshbench/meshbench/runner/kind/images"
)

// assemble makes the node image ref in the engine: the customized root
// filesystem imported, the component images imported and pinned into its
// containerd, committed with kind's entrypoint and stop signal.
func (b *Builder) assemble(ctx context.Context, work, pristine string, bins map[string]string, ref string) error {
	start := time.Now()
	root := filepath.Join(work, "rootfs")
	if err := b.run(ctx, "", nil, "cp", "-a", pristine, root); err != nil {
		return err
	}
	if err := b.customize(ctx, root, bins); err != nil {
		return fmt.Errorf("customize the node's root filesystem: %w", err)
	}
	// kube-proxy runs iptables and conntrack: its image is the Debian root
	// filesystem (as the pristine tar) with the binary on top.
	baseTar := filepath.Join(work, "base.tar")
	if err := b.run(ctx, "", nil, "tar", "--numeric-owner", "-C", pristine, "-cf", baseTar, "."); err != nil {
		return err
	}
	archive := filepath.Join(work, "images.tar")
	refs, err := b.componentImages(baseTar, bins, archive)
	if err != nil {
		return fmt.Errorf("component images: %w", err)
	}
	b.Log("node image: importing the root filesystem")
	baseRef := ref + "-base"
	name := fmt.Sprintf("%s%d", buildContainerPrefix, time.Now().UnixNano())
	// Removed whatever happened, before they can exist: a command killed
	// by a cancel may still have made them in the daemon.
	defer func() {
		_ = b.run(context.WithoutCancel(ctx), "", nil, "docker", "rm", "--force", "--volumes", name)
		_ = b.run(context.WithoutCancel(ctx), "", nil, "docker", "rmi", "--force", baseRef)
	}()
	rootTar := filepath.Join(work, "rootfs.tar")
	if err := b.run(ctx, "", nil, "tar", "--numeric-owner", "-C", root, "-cf", rootTar, "."); err != nil {
		return err
	}
	if err := b.run(ctx, "", nil, "docker", "import", rootTar, baseRef); err != nil {
		return err
	}
	// docker import cannot set a stop signal, and commit cannot either;
	// a container created with one keeps it in the committed image.
	if err := b.run(ctx, "", nil, "docker", "run", "-d", "--name", name, "--stop-signal", "SIGRTMIN+3",
		"--entrypoint", "sleep", "--security-opt", "seccomp=unconfined", baseRef, "infinity"); err != nil {
		return err
	}
	b.Log("node image: importing %d images into the node's containerd: %s", len(refs), strings.Join(refs, ", "))
	if err := b.run(ctx, "", nil, "docker", "exec", name, "bash", "-c", "nohup containerd >/tmp/containerd.log 2>&1 &"); err != nil {
		return err
	}
	if err := b.run(ctx, "", nil, "docker", "exec", name, "bash", "-c",
		"for i in $(seq 1 100); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 0.1; done; cat /tmp/containerd.log; exit 1"); err != nil {
		return fmt.Errorf("containerd in the build container: %w", err)
	}
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	err = b.runIn(ctx, f, "docker", "exec", "-i", name, "ctr", "--namespace=k8s.io", "images", "import",
		"--label=io.cri-containerd.pinned=pinned", "--all-platforms", "--no-unpack", "--digests", "-")
	f.Close()
	if err != nil {
		return err
	}
	if err := b.run(ctx, "", nil, "docker", "exec", name, "bash", "-c", stopContainerd); err != nil {
		return err
	}
	if err := b.run(ctx, "", nil, "docker", "commit",
		"--change", `ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]`,
		"--change", `CMD []`,
		"--change", `ENV container=docker`,
		"--change", `ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
		name, ref); err != nil {
		return err
	}
	b.Log("node image: assembled in %s", time.Since(start).Round(time.Second))
	return nil
}

// stopContainerd stops the build container's containerd and waits until
// it has exited (it stays a zombie: the container's init is sleep, which
// reaps nothing).
const stopContainerd = `pkill -x containerd
for i in $(seq 1 300); do
  live=0
  for p in $(pgrep -x containerd); do
    state=$(awk '{print $3}' /proc/$p/stat 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && live=1
  done
  [ $live = 0 ] && rm -f /tmp/containerd.log && exit 0
  sleep 0.1
done
echo "containerd did not exit" >&2; exit 1`

// componentImages writes the images kubeadm and kind's containerd
// configuration name (control plane, kube-proxy, etcd, CoreDNS, pause) to
// one archive and returns their references.
func (b *Builder) componentImages(baseTar string, bins map[string]string, archive string) ([]string, error) {
	imgs := map[string]v1.Image{}
	bin := func(name string) (v1.Image, error) {
		return images.Binary(bins[name], "/usr/local/bin/"+name, images.Config{})
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		img, err := bin(c)
		if err != nil {
			return nil, err
		}
		imgs["registry.k8s.io/"+c+":"+b.Kubernetes] = img
	}
	base, err := images.TarLayer(baseTar)
	if err != nil {
		return nil, err
	}
	proxy, err := images.BinaryLayer(bins["kube-proxy"], "/usr/local/bin/kube-proxy")
	if err != nil {
		return nil, err
	}
	if imgs["registry.k8s.io/kube-proxy:"+b.Kubernetes], err = images.FromLayers([]v1.Layer{base, proxy}, images.Config{}); err != nil {
		return nil, err
	}
	if imgs["registry.k8s.io/etcd:"+b.EtcdTag], err = bin("etcd"); err != nil {
		return nil, err
	}
	if imgs["registry.k8s.io/coredns/coredns:"+b.CoreDNS], err = images.Binary(bins["coredns"], "/coredns", images.Config{Entrypoint: []string{"/coredns"}}); err != nil {
		return nil, err
	}
	pause, err := images.Binary(bins["pause"], "/pause", images.Config{Entrypoint: []string{"/pause"}})
	if err != nil {
		return nil, err
	}
	for _, tag := range b.PauseTags {
		imgs["registry.k8s.io/pause:"+tag] = pause
	}
	f, err := os.Create(archive)
	if err != nil {
		return nil, err
	}
	if err := images.WriteArchive(f, imgs); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	var refs []string
	for r := range imgs {
		refs = append(refs, r)
	}
	return refs, nil
}
