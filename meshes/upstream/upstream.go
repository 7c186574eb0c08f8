// Package upstream holds the reference meshes whose data planes come only
// as images from a registry (Istio's sidecar and ambient modes, Linkerd),
// at pinned versions. Where no registry is reachable, as on an air-gapped
// machine, each reports itself unavailable with the pull error, per (mesh,
// mode), within seconds: a run goes on with the meshes it can run.
package upstream

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

// PullTimeout bounds each image pull of an availability check.
var PullTimeout = 30 * time.Second

// mesh is a mesh installed from its released images.
type mesh struct {
	name, product, version string
	modes                  []scenarios.Mode
	// images are what its data plane and control plane run, pinned.
	images []string

	once sync.Once
	err  error
}

var (
	_ meshes.Mesh         = (*mesh)(nil)
	_ meshes.Availability = (*mesh)(nil)
	_ meshes.Versioned    = (*mesh)(nil)
)

// IstioVersion and LinkerdVersion are the pinned releases.
const (
	IstioVersion   = "1.27.3"
	LinkerdVersion = "edge-25.10.1"
)

// Istio is Istio with sidecars (Envoy) and in ambient mode (ztunnel per
// node: meshbench's per-node mode).
func Istio() meshes.Mesh {
	hub := "docker.io/istio/"
	return &mesh{name: "istio", product: "Istio", version: IstioVersion,
		modes: []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode},
		images: []string{hub + "pilot:" + IstioVersion, hub + "proxyv2:" + IstioVersion,
			hub + "ztunnel:" + IstioVersion, hub + "install-cni:" + IstioVersion}}
}

// Linkerd is Linkerd with its sidecar proxy (linkerd2-proxy).
func Linkerd() meshes.Mesh {
	hub := "cr.l5d.io/linkerd/"
	return &mesh{name: "linkerd", product: "Linkerd", version: LinkerdVersion,
		modes:  []scenarios.Mode{scenarios.Sidecar},
		images: []string{hub + "controller:" + LinkerdVersion, hub + "proxy:" + LinkerdVersion, hub + "proxy-init:" + LinkerdVersion}}
}

func (m *mesh) Name() string            { return m.name }
func (m *mesh) Modes() []scenarios.Mode { return m.modes }
func (m *mesh) Version() string         { return m.product + " " + m.version }
func (m *mesh) Deploy(meshes.Env, scenarios.Mode) (*meshes.Deployment, error) {
	return nil, m.Available()
}

// Available pulls the pinned images into the local Docker engine, once:
// the first that fails makes the mesh unavailable, with the pull's
// error. With every image pulled, the mesh is still unavailable: its
// installer is not in this build.
func (m *mesh) Available() error {
	m.once.Do(func() {
		if _, err := exec.LookPath("docker"); err != nil {
			m.err = fmt.Errorf("%s %s runs from registry images and needs a Docker engine to pull them: no docker command", m.product, m.version)
			return
		}
		for _, img := range m.images {
			if err := pull(img); err != nil {
				m.err = fmt.Errorf("%s %s needs its images from a registry: %w", m.product, m.version, err)
				return
			}
		}
		m.err = fmt.Errorf("%s %s: images pulled (%s), but installing it from its released manifests is not in this build", m.product, m.version, strings.Join(m.images, ", "))
	})
	return m.err
}

// pull pulls one image, bounded by PullTimeout.
func pull(img string) error {
	ctx, cancel := context.WithTimeout(context.Background(), PullTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "pull", "--quiet", img).CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("docker pull %s: no answer within %s", img, PullTimeout)
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		msg = strings.TrimPrefix(msg, "Error response from daemon: ")
		return fmt.Errorf("docker pull %s: %s", img, msg)
	}
	return nil
}
