package nginx

import (
	"os/exec"
	"testing"

	"github.com/meshbench/meshbench/meshes/internal/meshtest"
	"github.com/meshbench/meshbench/scenarios"
)

// TestConfigsPassNginxsCheck renders the sidecars and has nginx itself
// check the configurations (nginx -t).
func TestConfigsPassNginxsCheck(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (scripts/setup.sh installs it as root): cannot check its configuration")
	}
	for shape := range meshtest.Shapes {
		// HTTP/1.1 (proxy_pass), gRPC (grpc_pass) and TCP (stream)
		// render differently.
		for _, protocol := range []string{scenarios.ProtocolHTTP, scenarios.ProtocolGRPC, scenarios.ProtocolTCP} {
			if protocol == scenarios.ProtocolTCP && shape != "pair" {
				continue // TCP services call nothing
			}
			env := meshtest.Env(t.TempDir(), shape, false)
			env.Protocol = protocol
			dep, err := New().Deploy(env, scenarios.Sidecar)
			if err != nil {
				t.Fatal(err)
			}
			if len(dep.Components) != len(env.Workloads()) {
				t.Errorf("%s: %d proxies for %d workloads", shape, len(dep.Components), len(env.Workloads()))
			}
			for _, c := range dep.Components {
				out, err := exec.Command(bin, "-t", "-c", c.Args[1], "-e", "stderr").CombinedOutput()
				if err != nil {
					t.Errorf("%s %s %s: nginx -t: %v\n%s", shape, protocol, c.Name, err, out)
				}
			}
		}
	}
}
