package runner

import (
	"encoding/json"
	"testing"

	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/scenarios"
)

// TestConformancePolicies: every object the suite applies decodes strictly
// and is something meshbench's control plane compiles.
func TestConformancePolicies(t *testing.T) {
	sets := [][]scenarios.Policy{accessTarget(), specsPolicy(`/metrics`, "*"), specsPolicy(`.*`, "GET"), splitPolicy(75, 25)}
	for _, kind := range []string{"TrafficTarget", "TCPRoute", "HTTPRouteGroup", "TrafficSplit"} {
		sets = append(sets, []scenarios.Policy{sampleObject(kind)})
	}
	for _, set := range sets {
		var raw []json.RawMessage
		for _, p := range set {
			b, err := json.Marshal(p.Object)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b)
		}
		if err := controlplane.Check(raw); err != nil {
			t.Errorf("%v: %v", set, err)
		}
	}
}
