package reports

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/meshbench/meshbench/runner/results"
)

// Group is the trials of one (mesh, mode, rate), with the baseline trial of
// the same trial number and rate for each, when the run had one.
type Group struct {
	Mesh     string
	Mode     string
	Rate     float64
	Trials   []*results.Trial
	Baseline map[int]*results.Trial
}

// Key identifies the group across runs: mesh/mode@rate.
func (g *Group) Key() string { return fmt.Sprintf("%s/%s@%g", g.Mesh, g.Mode, g.Rate) }

// Values is the metric of every trial it applies to.
func (g *Group) Values(m Metric) []float64 {
	var out []float64
	for _, t := range g.Trials {
		if v, ok := m.Value(t, g.Baseline[t.Trial]); ok {
			out = append(out, v)
		}
	}
	return out
}

// GroupTrials groups trials by (mesh, mode, rate), ordered by rate, then
// by first appearance, with the baseline first at each rate. A max search's
// probes are left out (SummarizeMax covers them).
func GroupTrials(trials []*results.Trial) []*Group {
	type trialRate struct {
		trial int
		rate  float64
	}
	baseline := map[trialRate]*results.Trial{}
	byKey := map[string]*Group{}
	var groups []*Group
	for _, t := range trials {
		if t.Probe != nil {
			continue
		}
		if t.Mode == BaselineMode {
			baseline[trialRate{t.Trial, t.Requested}] = t
		}
		g := byKey[t.RateKey()]
		if g == nil {
			g = &Group{Mesh: t.Mesh, Mode: t.Mode, Rate: t.Requested, Baseline: map[int]*results.Trial{}}
			byKey[t.RateKey()] = g
			groups = append(groups, g)
		}
		g.Trials = append(g.Trials, t)
	}
	for _, g := range groups {
		for _, t := range g.Trials {
			if b := baseline[trialRate{t.Trial, t.Requested}]; b != nil {
				g.Baseline[t.Trial] = b
			}
		}
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].Rate != groups[j].Rate {
			return groups[i].Rate < groups[j].Rate
		}
		return groups[i].Mode == BaselineMode && groups[j].Mode != BaselineMode
	})
	return groups
}

// Metric is a per-trial figure that statistics, comparisons, gates and SLOs
// work on.
type Metric struct {
	Name string
	// Unit is how values print: "ms", "qps", "ratio", "m" (millicores),
	// "MB".
	Unit string
	// HigherIsWorse orders regressions: true for latency, CPU, memory and
	// errors; false for throughput.
	HigherIsWorse bool
	Doc           string
	// Value extracts the metric from a trial, given the baseline trial of
	// the same trial number (nil when none); false when it does not apply.
	Value func(t, base *results.Trial) (float64, bool)
}

func latency(f func(results.Latency) float64) func(t, _ *results.Trial) (float64, bool) {
	return func(t, _ *results.Trial) (float64, bool) { return f(t.LatencyMs), true }
}

func added(f func(results.Latency) float64) func(t, base *results.Trial) (float64, bool) {
	return func(t, base *results.Trial) (float64, bool) {
		if base == nil || t.Mode == BaselineMode {
			return 0, false
		}
		return f(t.LatencyMs) - f(base.LatencyMs), true
	}
}

// usage sums CPU or peak RSS over the system under test: every component
// except the load generator (apps and proxies), or only the proxies.
func usage(proxiesOnly bool, f func(results.Usage) float64) func(t, _ *results.Trial) (float64, bool) {
	return func(t, _ *results.Trial) (float64, bool) {
		sum, n := 0.0, 0
		for _, u := range t.Components {
			// An unknown class (SMPS documents from before classes were
			// recorded) might be the load generator: left out.
			if u.Class == "" || u.Class == results.ClassLoadGen || (proxiesOnly && u.Class != results.ClassProxy) {
				continue
			}
			sum += f(u)
			n++
		}
		return sum, n > 0
	}
}

// Metrics are the metrics meshbench knows, in report order.
var Metrics = []Metric{
	{Name: "p50", Unit: "ms", HigherIsWorse: true, Doc: "median latency", Value: latency(func(l results.Latency) float64 { return l.P50 })},
	{Name: "p90", Unit: "ms", HigherIsWorse: true, Doc: "90th percentile latency", Value: latency(func(l results.Latency) float64 { return l.P90 })},
	{Name: "p99", Unit: "ms", HigherIsWorse: true, Doc: "99th percentile latency", Value: latency(func(l results.Latency) float64 { return l.P99 })},
	{Name: "p99.9", Unit: "ms", HigherIsWorse: true, Doc: "99.9th percentile latency", Value: latency(func(l results.Latency) float64 { return l.P999 })},
	{Name: "co-p99", Unit: "ms", HigherIsWorse: true, Doc: "99th percentile latency from each request's intended send time (coordinated omission corrected)",
		Value: func(t, _ *results.Trial) (float64, bool) { return t.COLatencyMs.P99, t.COLatencyMs.P99 > 0 }},
	{Name: "added-p50", Unit: "ms", HigherIsWorse: true, Doc: "p50 minus the same trial's baseline p50", Value: added(func(l results.Latency) float64 { return l.P50 })},
	{Name: "added-p99", Unit: "ms", HigherIsWorse: true, Doc: "p99 minus the same trial's baseline p99", Value: added(func(l results.Latency) float64 { return l.P99 })},
	{Name: "qps", Unit: "qps", HigherIsWorse: false, Doc: "achieved request rate",
		Value: func(t, _ *results.Trial) (float64, bool) { return t.Achieved, true }},
	{Name: "error-rate", Unit: "ratio", HigherIsWorse: true, Doc: "failed requests (non-2xx or transport errors) over all",
		Value: func(t, _ *results.Trial) (float64, bool) {
			if t.Requests == 0 {
				return 0, false
			}
			return float64(t.Errors) / float64(t.Requests), true
		}},
	{Name: "cpu", Unit: "m", HigherIsWorse: true, Doc: "CPU of the system under test (apps and proxies, not the load generator), millicores",
		Value: usage(false, func(u results.Usage) float64 { return u.CPUMillicores })},
	{Name: "mem", Unit: "MB", HigherIsWorse: true, Doc: "summed peak RSS of the system under test (apps and proxies)",
		Value: usage(false, func(u results.Usage) float64 { return u.RSSMaxMB })},
	{Name: "proxy-cpu", Unit: "m", HigherIsWorse: true, Doc: "CPU of the proxies alone, millicores",
		Value: usage(true, func(u results.Usage) float64 { return u.CPUMillicores })},
	{Name: "proxy-mem", Unit: "MB", HigherIsWorse: true, Doc: "summed peak RSS of the proxies alone",
		Value: usage(true, func(u results.Usage) float64 { return u.RSSMaxMB })},
}

// metricAliases are other names users type.
var metricAliases = map[string]string{"p999": "p99.9", "p99_9": "p99.9", "rps": "qps", "memory": "mem", "+p50": "added-p50", "+p99": "added-p99", "errors": "error-rate"}

// MetricByName finds a metric by name or alias.
func MetricByName(name string) (Metric, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	if a, ok := metricAliases[name]; ok {
		name = a
	}
	for _, m := range Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// MetricNames lists the metric names, for error messages.
func MetricNames() string {
	names := make([]string, len(Metrics))
	for i, m := range Metrics {
		names[i] = m.Name
	}
	return strings.Join(names, ", ")
}

// Format prints a value in the metric's unit.
func (m Metric) Format(v float64) string {
	switch m.Unit {
	case "ms":
		if v < 0 {
			return "-" + ms(-v)
		}
		return ms(v)
	case "qps":
		return fmt.Sprintf("%.1f", v)
	case "ratio":
		return fmt.Sprintf("%.3g%%", v*100)
	case "m":
		return fmt.Sprintf("%.0fm", v)
	case "MB":
		return fmt.Sprintf("%.1fMB", v)
	}
	return fmt.Sprintf("%g", v)
}

// Estimate is one metric of a group across its trials: the median with a
// bootstrap interval, and the trial-to-trial spread.
type Estimate struct {
	Metric string   `json:"metric"`
	Unit   string   `json:"unit"`
	Median Interval `json:"median"`
	// Min and Max are the extreme trials: the noise.
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// GroupStats are a group's estimates, in the order of Metrics.
type GroupStats struct {
	Key       string     `json:"key"`
	Mesh      string     `json:"mesh"`
	Mode      string     `json:"mode"`
	Rate      float64    `json:"requestedQPS"`
	Trials    int        `json:"trials"`
	Estimates []Estimate `json:"estimates"`
}

// Get returns the estimate of the named metric.
func (g *GroupStats) Get(name string) (Estimate, bool) {
	for _, e := range g.Estimates {
		if e.Metric == name {
			return e, true
		}
	}
	return Estimate{}, false
}

// DefaultSeed seeds the bootstrap unless a caller chooses another.
const DefaultSeed = 1

// Statistics estimates every metric of every group. The bootstrap of each
// group draws from a generator seeded by seed and the group's key, so
// results do not depend on which other groups are present.
func Statistics(groups []*Group, seed uint64) []*GroupStats {
	var out []*GroupStats
	for _, g := range groups {
		gs := &GroupStats{Key: g.Key(), Mesh: g.Mesh, Mode: g.Mode, Rate: g.Rate, Trials: len(g.Trials)}
		rng := seeded(seed, g.Key())
		for _, m := range Metrics {
			v := g.Values(m)
			if len(v) == 0 {
				continue
			}
			sp := span(v)
			gs.Estimates = append(gs.Estimates, Estimate{
				Metric: m.Name, Unit: m.Unit, Median: BootstrapMedian(v, DefaultLevel, DefaultResamples, rng), Min: sp[0], Max: sp[1],
			})
		}
		out = append(out, gs)
	}
	return out
}

// seeded is a generator for one named stream of a seed.
func seeded(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}
