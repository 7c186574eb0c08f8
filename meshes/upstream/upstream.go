// Package upstream holds the reference meshes whose data planes come only
// as images from a registry (Istio's sidecar and ambient modes, Linkerd),
// at pinned versions. Where no registry answers, as on an air-gapped
// machine, each (mesh, mode) reports itself unavailable with the error a
// pull of its first image meets, within seconds: a run goes on with the
// meshes it can run.
package upstream

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

// CheckTimeout bounds an availability check (all its registries at once).
var CheckTimeout = 10 * time.Second

// IstioVersion and LinkerdVersion are the pinned releases.
const (
	IstioVersion   = "1.27.3"
	LinkerdVersion = "edge-25.10.1"
)

// mesh is a mesh installed from its released images.
type mesh struct {
	name, product, version string
	// images are what each mode runs (control plane and data plane),
	// pinned.
	images map[scenarios.Mode][]string
	modes  []scenarios.Mode

	mu  sync.Mutex
	err map[scenarios.Mode]error
}

var (
	_ meshes.Mesh             = (*mesh)(nil)
	_ meshes.ModeAvailability = (*mesh)(nil)
	_ meshes.Versioned        = (*mesh)(nil)
)

// Istio is Istio with sidecars (Envoy) and in ambient mode (ztunnel per
// node: meshbench's per-node mode).
func Istio() meshes.Mesh {
	img := func(n string) string { return "docker.io/istio/" + n + ":" + IstioVersion }
	return newMesh("istio", "Istio", IstioVersion, map[scenarios.Mode][]string{
		scenarios.Sidecar: {img("pilot"), img("proxyv2")},
		scenarios.PerNode: {img("pilot"), img("ztunnel"), img("install-cni")},
	}, scenarios.Sidecar, scenarios.PerNode)
}

// Linkerd is Linkerd with its sidecar proxy (linkerd2-proxy).
func Linkerd() meshes.Mesh {
	img := func(n string) string { return "cr.l5d.io/linkerd/" + n + ":" + LinkerdVersion }
	return newMesh("linkerd", "Linkerd", LinkerdVersion, map[scenarios.Mode][]string{
		scenarios.Sidecar: {img("controller"), img("proxy"), img("proxy-init")},
	}, scenarios.Sidecar)
}

func newMesh(name, product, version string, images map[scenarios.Mode][]string, modes ...scenarios.Mode) *mesh {
	return &mesh{name: name, product: product, version: version, images: images, modes: modes, err: map[scenarios.Mode]error{}}
}

func (m *mesh) Name() string            { return m.name }
func (m *mesh) Modes() []scenarios.Mode { return m.modes }
func (m *mesh) Version() string         { return m.product + " " + m.version }

func (m *mesh) Deploy(_ meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	return nil, m.AvailableIn(mode)
}

// AvailableIn asks the registries of the mode's images whether they
// answer (the registry API's base endpoint, as a pull starts), once per
// mode: the first that does not makes the mode unavailable, with the
// error. Where they answer, the mode is still unavailable: its installer
// is not in this build. Nothing is pulled.
func (m *mesh) AvailableIn(mode scenarios.Mode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err, ok := m.err[mode]; ok {
		return err
	}
	imgs := m.images[mode]
	err := fmt.Errorf("%s %s (%s): its registries answer, but installing it from its released manifests is not in this build (images %s)",
		m.product, m.version, mode, strings.Join(imgs, ", "))
	if len(imgs) == 0 {
		err = fmt.Errorf("%s has no %s mode", m.product, mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	for _, img := range imgs {
		if rerr := reachable(ctx, registryOf(img)); rerr != nil {
			err = fmt.Errorf("%s %s (%s) needs its images from a registry: pull %s: %w", m.product, m.version, mode, img, rerr)
			break
		}
	}
	m.err[mode] = err
	return err
}

// registryOf is the registry host an image reference names (Docker Hub's
// API host for docker.io).
func registryOf(img string) string {
	host, _, _ := strings.Cut(img, "/")
	if host == "docker.io" {
		return "registry-1.docker.io"
	}
	return host
}

// hosts caches each registry's answer for the process: one request per
// registry per run, whatever the number of (mesh, mode) pairs.
var hosts = struct {
	sync.Mutex
	err map[string]error
}{err: map[string]error{}}

// reachable asks a registry's API base (GET /v2/), once per process; any
// HTTP answer (401 included: anonymous pulls get a token first) means it
// answers.
func reachable(ctx context.Context, host string) error {
	hosts.Lock()
	defer hosts.Unlock()
	if err, ok := hosts.err[host]; ok {
		return err
	}
	err := ask(ctx, host)
	hosts.err[host] = err
	return err
}

func ask(ctx context.Context, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
