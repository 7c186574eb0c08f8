// Package none is the baseline "mesh": nothing between client and server.
// Every other mesh's added latency and cost is measured against it.
package none

import (
	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

type mesh struct{}

var (
	_ meshes.Mesh            = (*mesh)(nil)
	_ meshes.ProtocolCapable = (*mesh)(nil)
)

// Carries every protocol: there is nothing in the way.
func (*mesh) Carries(string, scenarios.Mode) error { return nil }

// New returns the baseline mesh.
func New() meshes.Mesh { return &mesh{} }

func (*mesh) Name() string { return "none" }

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Baseline} }

// SupportsReplicas: workloads dial a replicated service's address, which
// the platform spreads over its pods as kube-proxy does.
func (*mesh) SupportsReplicas(scenarios.Mode) error { return nil }

// Deploy starts nothing: every workload calls its callees' addresses
// directly.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	entry := env.Entry()
	return &meshes.Deployment{
		Target: meshes.Target{URL: "http://" + entry.Dial() + "/"},
		Apps:   meshes.CallsVia(env, meshes.Direct),
	}, nil
}
