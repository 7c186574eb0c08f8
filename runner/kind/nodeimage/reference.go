package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/meshbench/meshbench/runner/kind/images"
)

// referencePackages are the reference data planes, from the same Debian
// packages the local platform runs (scripts/setup.sh), so that both
// platforms compare the same builds.
// iptables is for the init role (see InitImage) and, with iproute2's tc,
// for the fault agents.
var referencePackages = []string{"haproxy", "nginx-light", "libnginx-mod-stream", "ca-certificates", "iptables", "iproute2"}

// ReferenceRepository names the image of the reference data planes.
const ReferenceRepository = "meshbench.local/reference-proxies"

// ReferenceRef is the reference proxies image's reference: the Debian
// suite and a digest of the packages.
func (v Versions) ReferenceRef() string {
	sum := sha256.Sum256([]byte(v.Debian + " " + strings.Join(referencePackages, ",") + " upgraded"))
	return ReferenceRepository + ":" + v.Debian + "-" + hex.EncodeToString(sum[:])[:10]
}

// InitRepository names the init image: meshbench's binary on the
// reference image's Debian root, which has iptables, for a pod's init
// container installing the mesh's redirects (as Istio's istio-init does).
const InitRepository = "meshbench.local/meshbench-init"

// InitImage is the init image for the meshbench binary at bin: the
// reference image's layer (shared with it) and the binary's, and a layer
// for each of extra (host files by their path in the image: the
// meshbench-proxy and meshbench-pod-process builds). Its tag is version,
// or with byContent version followed by a digest of what the image
// holds, so that a tag never names two builds.
func InitImage(reference images.Image, bin string, extra map[string]string, version string, byContent bool) (string, images.Image, error) {
	layers, err := reference.Layers()
	if err != nil {
		return "", nil, err
	}
	binLayer, err := images.BinaryLayer(bin, images.BinaryPath)
	if err != nil {
		return "", nil, err
	}
	layers = append(layers, binLayer)
	for _, at := range slices.Sorted(maps.Keys(extra)) {
		layer, err := images.BinaryLayer(extra[at], at)
		if err != nil {
			return "", nil, err
		}
		layers = append(layers, layer)
	}
	img, err := images.FromLayers(layers, images.Config{Entrypoint: []string{images.BinaryPath}})
	if err != nil {
		return "", nil, err
	}
	tag := strings.TrimPrefix(images.Ref(version), images.Repository+":")
	if byContent {
		// The configuration names every layer's content (its diff IDs),
		// hashed from the bytes the layers hold: a binary rebuilt
		// meanwhile cannot give the tag of another build. The version
		// gives way to it where the two exceed a tag's 128 characters.
		cfg, err := img.ConfigName()
		if err != nil {
			return "", nil, err
		}
		suffix := "-" + cfg.Hex[:12]
		tag = tag[:min(len(tag), maxTag-len(suffix))] + suffix
	}
	return InitRepository + ":" + tag, img, nil
}

// maxTag is the length of the longest image tag.
const maxTag = 128

// ReferenceImage builds the image holding HAProxy and nginx (one image,
// two roles, as meshbench's own is one image for every role): a minimal
// Debian root filesystem with their packages, as one layer.
func (b *Builder) ReferenceImage(ctx context.Context) (string, images.Image, error) {
	if b.Log == nil {
		b.Log = func(string, ...any) {}
	}
	unlock, err := lockCache(filepath.Join(b.CacheDir, "build"))
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	root, err := b.debootstrap(ctx, "reference", referencePackages)
	if err != nil {
		return "", nil, err
	}
	tarPath := filepath.Join(filepath.Dir(root), "rootfs.tar")
	if _, err := os.Stat(tarPath); err != nil {
		if err := b.run(ctx, "", nil, "tar", "--numeric-owner", "-C", root, "-cf", tarPath+".partial", "."); err != nil {
			os.Remove(tarPath + ".partial")
			return "", nil, err
		}
		if err := os.Rename(tarPath+".partial", tarPath); err != nil {
			return "", nil, err
		}
	}
	// Older reference root filesystems are superseded.
	entries, _ := os.ReadDir(filepath.Join(b.CacheDir, "build"))
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "reference-") && e.Name() != filepath.Base(filepath.Dir(root)) {
			b.Log("removing the superseded stage %s", e.Name())
			removeStage(filepath.Join(b.CacheDir, "build", e.Name()))
		}
	}
	layer, err := images.TarLayer(tarPath)
	if err != nil {
		return "", nil, err
	}
	img, err := images.FromLayers([]v1.Layer{layer}, images.Config{
		Labels: map[string]string{"org.opencontainers.image.title": "meshbench reference proxies (Debian " + b.Debian + ": " + strings.Join(referencePackages, ", ") + ")"},
	})
	return b.ReferenceRef(), img, err
}
