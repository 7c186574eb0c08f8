// Package none is the baseline "mesh": nothing between client and server.
// Every other mesh's added latency and cost is measured against it.
package none

import (
	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

type mesh struct{}

var _ meshes.Mesh = (*mesh)(nil)

// New returns the baseline mesh.
func New() meshes.Mesh { return &mesh{} }

func (*mesh) Name() string { return "none" }

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Baseline} }

// Deploy starts nothing: the client calls the server's address directly.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	return &meshes.Deployment{Target: meshes.Target{
		URL: "http://" + meshes.HostPort(env.Server.Node.Addr, env.Server.Port) + "/",
	}}, nil
}
