package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/local"
	"github.com/meshbench/meshbench/scenarios"
)

// neverReady is a sidecar mesh whose proxy never becomes ready: the
// runner fails the deployment after it has started the services and
// installed their interception.
type neverReady struct{}

func (neverReady) Name() string            { return "never-ready" }
func (neverReady) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Sidecar} }
func (neverReady) Deploy(env meshes.Env, _ scenarios.Mode) (*meshes.Deployment, error) {
	plan := meshes.PlanProxies(env, scenarios.Sidecar, meshes.Exclusion{Mark: 1337})
	entry := env.Entry()
	return &meshes.Deployment{Target: plan.Target, Apps: plan.Apps, Redirects: plan.Redirects,
		Components: []meshes.Component{{Name: "proxy", Class: "proxy", Node: entry.Node.Name,
			Command: "sleep", Args: []string{"60"},
			// Nothing listens there.
			Ready: meshes.Probe{TCP: meshes.HostPort(entry.Node.Addr, 15999)}}},
	}, nil
}

// TestIntegrationFailedDeployTearsDown: a mesh component that never gets
// ready, after interception is in place, fails the run with the reason,
// and leaves no process, iptables rule or namespace behind (the runner
// once panicked there, on the nil deployment its error return made).
func TestIntegrationFailedDeployTearsDown(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("transparent interception needs root (network namespaces and iptables)")
	}
	sc, err := scenarios.Parse("never-ready.yaml", []byte(`apiVersion: meshbench/v1
name: never-ready
topology:
  services: [{name: server}]
meshes: [{name: never-ready, mode: sidecar}]
load: {qps: 100, duration: 1s, warmup: 0s}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	ctx := context.Background()
	plat, err := local.New(ctx, local.Options{RunID: id, Network: local.NetNS, Self: meshbenchBin})
	if err != nil {
		t.Fatal(err)
	}
	_, trials, err := runner.Run(ctx, runner.Options{
		Scenario: sc, Meshes: map[string]meshes.Mesh{"never-ready": neverReady{}}, Platform: plat,
		OutDir: filepath.Join(t.TempDir(), "out"), RunID: id, ReadyTimeout: 2 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "proxy") || len(trials) != 0 {
		t.Fatalf("run: %v, %d trials; want the proxy's readiness failure", err, len(trials))
	}
	t.Logf("run failed as it should: %v", err)
	if l := leftovers(t, id); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}
