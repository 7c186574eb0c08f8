// Package images builds the container images meshbench runs on
// Kubernetes without a Dockerfile, a build daemon or a registry
// (github.com/google/go-containerregistry), and writes them as one
// archive in `docker save` format, which `docker load` and kind's image
// loading (containerd's `ctr images import`) both read.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image as go-containerregistry holds it.
type Image = v1.Image

// Repository is where meshbench's own images are named (never pulled:
// they are loaded into the engine or the cluster).
const Repository = "meshbench.local/meshbench"

// BinaryPath is where the meshbench binary sits in its image.
const BinaryPath = "/usr/local/bin/meshbench"

// ProxyPath is where the init image holds meshbench-proxy, the proxy
// role's own build, when it has it.
const ProxyPath = "/usr/local/bin/meshbench-proxy"

// WrapperPath is where the init image holds meshbench-pod-process, the
// kind platform's process wrapper alone, when it has it.
const WrapperPath = "/usr/local/bin/meshbench-pod-process"

// epoch is every file's and the image's time: the same binary makes the
// same image, byte for byte.
var epoch = time.Unix(0, 0).UTC()

// CheckStatic fails unless the ELF file at path needs no dynamic loader:
// the meshbench image has no C library.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0 (make build does) to run it in an image", path)
		}
	}
	return nil
}

// Meshbench is the image that runs every meshbench role: the static
// binary at binPath, and a /tmp.
func Meshbench(binPath, version string) (v1.Image, error) {
	if err := CheckStatic(binPath); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	layer, err := Layer([]File{
		{Path: "tmp/", Mode: 0o1777},
		{Path: "usr/", Mode: 0o755}, {Path: "usr/local/", Mode: 0o755}, {Path: "usr/local/bin/", Mode: 0o755},
		{Path: BinaryPath[1:], Mode: 0o755, Data: bin},
	})
	if err != nil {
		return nil, err
	}
	return FromLayers([]v1.Layer{layer}, Config{
		Entrypoint: []string{BinaryPath},
		Labels:     map[string]string{"org.opencontainers.image.version": version, "org.opencontainers.image.title": "meshbench"},
	})
}

// Config is what an image says about how to run it.
type Config struct {
	Entrypoint []string
	// Env defaults to a PATH of the usual binary directories.
	Env    []string
	Labels map[string]string
}

// FromLayers is a linux/amd64 image of layers (first at the bottom),
// dated at the epoch so that the same layers make the same image.
func FromLayers(layers []v1.Layer, c Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: epoch}
	cf.Config.Entrypoint = c.Entrypoint
	cf.Config.Env = c.Env
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cf.Config.Labels = c.Labels
	return mutate.ConfigFile(img, cf)
}

// Binary is a one-layer image holding a file read from the host at
// path, as /at in the image, with /tmp.
func Binary(path, at string, c Config) (v1.Image, error) {
	layer, err := BinaryLayer(path, at)
	if err != nil {
		return nil, err
	}
	return FromLayers([]v1.Layer{layer}, c)
}

// BinaryLayer is a layer holding the file at path as /at, with /tmp.
func BinaryLayer(path, at string) (v1.Layer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	files := []File{{Path: "tmp/", Mode: 0o1777}}
	dir := ""
	for _, part := range strings.Split(strings.Trim(filepath.Dir(at), "/"), "/") {
		if part == "" {
			continue
		}
		dir += part + "/"
		files = append(files, File{Path: dir, Mode: 0o755})
	}
	files = append(files, File{Path: strings.TrimPrefix(at, "/"), Mode: 0o755, Data: data})
	return Layer(files)
}

// TarLayer is a layer read from an (uncompressed) tar file.
func TarLayer(path string) (v1.Layer, error) { return tarball.LayerFromFile(path) }

// File is an entry of a layer: a directory when Path ends in "/".
type File struct {
	Path string
	Mode int64
	Data []byte
}

// Layer makes an uncompressed-in-memory, gzip-on-write layer of files.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		if len(f.Path) > 0 && f.Path[len(f.Path)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// WriteArchive writes the images, each under its reference, as one
// `docker save` archive.
func WriteArchive(w io.Writer, imgs map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for ref, img := range imgs {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", ref, err)
		}
		refs[tag] = img
	}
	if len(refs) == 0 {
		return errors.New("no images to write")
	}
	return tarball.MultiRefWrite(refs, w)
}

// Ref is the reference of meshbench's image for a version: the tag is
// the version made tag-safe, or "dev".
func Ref(version string) string {
	tag := []byte(version)
	for i, c := range tag {
		ok := c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			tag[i] = '-'
		}
	}
	if len(tag) == 0 || tag[0] == '.' || tag[0] == '-' {
		tag = append([]byte("v"), tag...)
	}
	if len(tag) > 128 {
		tag = tag[:128]
	}
	return Repository + ":" + string(tag)
}

// LoadDocker streams an archive into the local Docker engine (`docker
// load`) and returns what it said.
func LoadDocker(ctx context.Context, write func(io.Writer) error) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", "load")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// An OS pipe: if docker exits early, the write fails (EPIPE) instead
	// of blocking.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("docker load: %w", err)
	}
	werr := write(stdin)
	stdin.Close()
	err = cmd.Wait()
	if err != nil {
		return "", fmt.Errorf("docker load: %v: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	if werr != nil {
		return "", werr
	}
	return string(bytes.TrimSpace(out.Bytes())), nil
}
