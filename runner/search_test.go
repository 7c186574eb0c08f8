package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// TestSearchConvergesOnTheCapacity simulates a system that meets the SLO up
// to a capacity and checks the search's probes and result.
func TestSearchConvergesOnTheCapacity(t *testing.T) {
	m := &scenarios.MaxSearch{Start: 500, Limit: 50000, Precision: 0.05, MaxProbes: 20}
	for _, capacity := range []float64{0.5, 700, 3000, 12345, 49999, 60000} {
		lo, hi := 0.0, 0.0
		rate, probes, stop := m.Start, 0, ""
		for probes < m.MaxProbes {
			probes++
			if rate <= capacity {
				lo = rate
			} else {
				hi = rate
			}
			var next float64
			if next, stop = nextRate(m, lo, hi); stop != "" {
				break
			}
			rate = next
		}
		switch {
		case capacity < 1:
			if lo != 0 || stop != "none" {
				t.Errorf("capacity %g: max %g, stop %q: want none", capacity, lo, stop)
			}
		case capacity >= m.Limit:
			if lo != m.Limit || stop != "limit" {
				t.Errorf("capacity %g: max %g, stop %q: want the limit", capacity, lo, stop)
			}
		default:
			if lo > capacity || (capacity-lo)/lo > m.Precision || stop != "converged" {
				t.Errorf("capacity %g: max %g (fails at %g), stop %q after %d probes: want within %g below", capacity, lo, hi, stop, probes, m.Precision)
			}
		}
	}
}

func TestMissesSLO(t *testing.T) {
	slo := scenarios.SLO{P99: scenarios.Duration(2 * time.Millisecond), ErrorRate: 0.01, MinAchieved: 0.95}
	ok := &results.Trial{Requested: 1000, Achieved: 990, Requests: 1000, LatencyMs: results.Latency{P99: 1.5}}
	if why := missesSLO(slo, ok); why != "" {
		t.Errorf("a passing trial missed: %s", why)
	}
	bad := &results.Trial{Requested: 1000, Achieved: 900, Requests: 1000, Errors: 20, LatencyMs: results.Latency{P99: 2.5}}
	why := missesSLO(slo, bad)
	for _, want := range []string{"p99 2.5ms > 2ms", "error rate 0.02 > 0.01", "achieved 900 of 1000 rps"} {
		if !strings.Contains(why, want) {
			t.Errorf("reason %q lacks %q", why, want)
		}
	}
	if why := missesSLO(slo, &results.Trial{Requested: 1000}); !strings.Contains(why, "no requests") {
		t.Errorf("an empty trial passed: %q", why)
	}
}
