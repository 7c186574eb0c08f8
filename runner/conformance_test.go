package runner

import (
	"encoding/json"
	"math"
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

// TestBinomialP checks the exact two-sided test against values computed
// by hand and its symmetry.
func TestBinomialP(t *testing.T) {
	cases := []struct {
		k, n int
		p    float64
		want float64
	}{
		{5, 10, 0.5, 1},           // the mode: every outcome is as or less likely
		{0, 10, 0.5, 2 / 1024.0},  // 0 or 10 of 10
		{10, 10, 0.5, 2 / 1024.0}, // symmetric
		{1, 10, 0.5, 22 / 1024.0}, // 0, 1, 9, 10
		{150, 200, 0.75, 1},       // the mode of B(200, 0.75)
	}
	for _, c := range cases {
		if got := binomialP(c.k, c.n, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("binomialP(%d, %d, %g) = %g, want %g", c.k, c.n, c.p, got, c.want)
		}
	}
	// A 50/50 split observed under a 75% claim is rejected at 1e-6.
	if p := binomialP(100, 200, 0.75); p >= 1e-6 {
		t.Errorf("100 of 200 under 0.75: p = %g, want < 1e-6", p)
	}
}
