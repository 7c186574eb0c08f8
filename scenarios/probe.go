package scenarios

import (
	"fmt"
	"slices"
	"strings"
)

// Probe is a steady-state hypothesis of a game day, with Litmus's modes:
// what "healthy" means, judged on the load client's seconds (no traffic
// of its own).
type Probe struct {
	Name string `yaml:"name" json:"name" mb:"required"`
	// Type is successRate (the percent of a second's requests that
	// succeed is at least Min) or latency (the second's Percentile is at
	// most Max).
	Type string `yaml:"type" json:"type" mb:"required"`
	// Mode is when it is judged: start-of-test (the seconds before the
	// first fault), end-of-test (the seconds after the last fault ends),
	// continuous (every second) or on-chaos (the seconds a fault is in
	// force).
	Mode       string   `yaml:"mode" json:"mode"`
	Min        float64  `yaml:"min" json:"min,omitempty"`
	Percentile float64  `yaml:"percentile" json:"percentile,omitempty"`
	Max        Duration `yaml:"max" json:"max,omitempty"`
	// Tolerance is the percent of judged seconds that may fail with the
	// probe still passing (default 0).
	Tolerance float64 `yaml:"tolerance" json:"tolerance,omitempty"`
	// Weight counts the probe in the resilience score (default 1).
	Weight float64 `yaml:"weight" json:"weight,omitempty"`
}

// Probe types and modes.
const (
	ProbeSuccessRate = "successRate"
	ProbeLatency     = "latency"
	ProbeStart       = "start-of-test"
	ProbeEnd         = "end-of-test"
	ProbeContinuous  = "continuous"
	ProbeOnChaos     = "on-chaos"
)

var (
	probeTypes = []string{ProbeSuccessRate, ProbeLatency}
	probeModes = []string{ProbeStart, ProbeEnd, ProbeContinuous, ProbeOnChaos}
)

// normalizeProbes fills the probes' defaults.
func (s *Scenario) normalizeProbes() {
	for i := range s.Probes {
		p := &s.Probes[i]
		if p.Mode == "" {
			p.Mode = ProbeContinuous
		}
		if p.Weight == 0 {
			p.Weight = 1
		}
	}
}

// validateProbes checks the probes: names, types with their bounds,
// modes, and that they judge a window with faults.
func (s *Scenario) validateProbes(add addFunc) {
	if len(s.Probes) > 0 && len(s.Faults) == 0 {
		add("probes", "probes judge a game day: the scenario has no faults")
	}
	seen := map[string]bool{}
	for i, p := range s.Probes {
		path := fmt.Sprintf("probes[%d]", i)
		if !nameRE.MatchString(p.Name) {
			add(path+".name", "%q is not a valid name: use 1-32 lowercase letters, digits and '-'", p.Name)
		} else if seen[p.Name] {
			add(path+".name", "a second probe named %q", p.Name)
		}
		seen[p.Name] = true
		if !slices.Contains(probeModes, p.Mode) {
			add(path+".mode", "unknown mode %q (%s)", p.Mode, strings.Join(probeModes, ", "))
		}
		if p.Tolerance < 0 || p.Tolerance >= 100 {
			add(path+".tolerance", "must be a percent of seconds from 0 to below 100, got %g", p.Tolerance)
		}
		if p.Weight <= 0 {
			add(path+".weight", "must be greater than 0, got %g", p.Weight)
		}
		switch p.Type {
		case ProbeSuccessRate:
			if p.Min <= 0 || p.Min > 100 {
				add(path+".min", "the least percent of a second's requests that succeed: more than 0, at most 100, got %g", p.Min)
			}
		case ProbeLatency:
			if p.Percentile != 50 && p.Percentile != 99 {
				add(path+".percentile", "50 or 99 (the percentiles kept second by second), got %g", p.Percentile)
			}
			if p.Max <= 0 {
				add(path+".max", "missing: the most the percentile may be (e.g. 50ms)")
			}
		default:
			add(path+".type", "unknown probe type %q (%s)", p.Type, strings.Join(probeTypes, ", "))
		}
	}
}
