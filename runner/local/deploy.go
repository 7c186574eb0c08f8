package local

import (
	"context"
	"fmt"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
)

// Deploy places a unit in the phases runner.PlaceUnit gives a pod:
// applications, redirects (iptables in the nodes' namespaces), the other
// processes.
func (p *platform) Deploy(ctx context.Context, u runner.Unit) (runner.Deployed, error) {
	for _, pod := range u.Pods {
		if len(pod.Redirects) > 0 && !p.transparent() {
			return nil, fmt.Errorf("deploy %s: transparent interception needs the netns network and iptables (network is %s)", u.Name, p.mode)
		}
	}
	return runner.PlaceUnit(ctx, u, placer{p})
}

// placer starts processes and installs redirects for runner.PlaceUnit.
type placer struct{ p *platform }

func (pl placer) StartProcess(_ context.Context, node string, spec runner.ProcessSpec) (runner.Process, error) {
	return pl.p.start(node, spec)
}

func (pl placer) Redirect(ctx context.Context, rs []meshes.Redirect) (func(context.Context) error, error) {
	return pl.p.intercept(ctx, rs)
}
