// Package reports turns a run's results into summaries people read: the
// comparison table of (mesh, mode) rows, with added latency versus the
// baseline and the proxies' resource cost.
//
// It reads results (package runner/results) and never reaches into the
// runner's internals or re-measures anything.
package reports

import (
	"sort"

	"github.com/meshbench/meshbench/runner/results"
)

// Row summarizes one (mesh, mode) across its trials. Figures are medians
// over trials; Errors and Requests are totals.
type Row struct {
	Mesh     string  `json:"mesh"`
	Mode     string  `json:"mode"`
	Rate     float64 `json:"requestedQPS"`
	Trials   int     `json:"trials"`
	QPS      float64 `json:"achievedQPS"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`

	LatencyMs results.Latency `json:"latencyMs"`
	// COP99Ms is the median p99 corrected for coordinated omission.
	COP99Ms float64 `json:"coP99Ms"`

	// AddedP50Ms and AddedP99Ms are the medians of the per-trial differences
	// to the baseline of the same trial; HasBaseline is false when the run
	// had no baseline.
	HasBaseline bool    `json:"hasBaseline"`
	AddedP50Ms  float64 `json:"addedP50Ms"`
	AddedP99Ms  float64 `json:"addedP99Ms"`

	// Proxies is the number of proxy processes; ProxyCPU and ProxyRSSMB
	// are their summed CPU (millicores) and peak RSS.
	Proxies    int     `json:"proxies"`
	ProxyCPU   float64 `json:"proxyCPUMillicores"`
	ProxyRSSMB float64 `json:"proxyRSSMB"`
	// ProxyWorkingSetMB is the proxies' summed peak working set (cgroup
	// memory usage less inactive file cache), when measured.
	ProxyWorkingSetMB float64 `json:"proxyWorkingSetMB,omitempty"`
	// AddedCPU is the median per-trial difference to the baseline of all
	// components' CPU together (load generator, apps, proxies, control
	// plane): what the mode costs wherever it runs, in the proxies or,
	// proxyless, in the workloads' own processes.
	AddedCPU float64 `json:"addedCPUMillicores"`
	// SUTCPU is the median CPU of the system under test (apps and
	// proxies, not the load generator), to tell when it saturated the CPUs
	// it was pinned to.
	SUTCPU float64 `json:"sutCPUMillicores"`

	// ProxyByNode are, by the node they run on, the proxies' median CPU
	// and memory (a sidecar's node is its pod's): what shows a shared
	// node's one proxy beside its pods' sidecars.
	ProxyByNode map[string]NodeProxies `json:"proxyByNode,omitempty"`

	// Spread gives each figure's [min, max] over trials: with n trials, the
	// probability that the median lies outside is 2/2^n (about 6% for 5).
	Spread Spread `json:"spread"`
}

// NodeProxies are the proxies on a node: their summed CPU (millicores),
// peak working set and peak RSS, medians over trials.
type NodeProxies struct {
	CPU          float64 `json:"cpuMillicores"`
	WorkingSetMB float64 `json:"workingSetMB,omitempty"`
	RSSMB        float64 `json:"rssMB"`
	// Count is how many proxies the node runs (more than one: a node
	// proxy and the waypoints placed beside it).
	Count int `json:"count,omitempty"`
}

// Spread holds per-figure [min, max] ranges over trials.
type Spread struct {
	AddedP50Ms [2]float64 `json:"addedP50Ms"`
	AddedP99Ms [2]float64 `json:"addedP99Ms"`
	ProxyCPU   [2]float64 `json:"proxyCPUMillicores"`
	ProxyRSSMB [2]float64 `json:"proxyRSSMB"`
}

// Key identifies the row's (mesh, mode).
func (r *Row) Key() string { return r.Mesh + "/" + r.Mode }

// sweep reports whether rows cover more than one rate.
func sweep(rows []*Row) bool {
	for _, r := range rows {
		if r.Rate != rows[0].Rate {
			return true
		}
	}
	return false
}

// BaselineMode is the mode whose rows the others are compared with.
const BaselineMode = "baseline"

// Summarize summarizes each group of GroupTrials: by rate, then in order of
// first appearance, with the baseline first at each rate. Each trial is
// compared with the baseline of the same trial and rate.
func Summarize(trials []*results.Trial) []*Row {
	var rows []*Row
	for _, g := range GroupTrials(trials) {
		rows = append(rows, summarize(g.Trials, g.Baseline))
	}
	return rows
}

func summarize(ts []*results.Trial, baseline map[int]*results.Trial) *Row {
	r := &Row{Mesh: ts[0].Mesh, Mode: ts[0].Mode, Rate: ts[0].Requested, Trials: len(ts)}
	col := func(f func(*results.Trial) float64) float64 {
		v := make([]float64, len(ts))
		for i, t := range ts {
			v[i] = f(t)
		}
		return Median(v)
	}
	r.QPS = col(func(t *results.Trial) float64 { return t.Achieved })
	r.LatencyMs = results.Latency{
		Min:  col(func(t *results.Trial) float64 { return t.LatencyMs.Min }),
		Mean: col(func(t *results.Trial) float64 { return t.LatencyMs.Mean }),
		P50:  col(func(t *results.Trial) float64 { return t.LatencyMs.P50 }),
		P90:  col(func(t *results.Trial) float64 { return t.LatencyMs.P90 }),
		P99:  col(func(t *results.Trial) float64 { return t.LatencyMs.P99 }),
		P999: col(func(t *results.Trial) float64 { return t.LatencyMs.P999 }),
		Max:  col(func(t *results.Trial) float64 { return t.LatencyMs.Max }),
	}
	r.COP99Ms = col(func(t *results.Trial) float64 { return t.COLatencyMs.P99 })
	for _, t := range ts {
		r.Requests += t.Requests
		r.Errors += t.Errors
	}
	var d50, d99, dcpu []float64
	for _, t := range ts {
		if b := baseline[t.Trial]; b != nil {
			d50 = append(d50, t.LatencyMs.P50-b.LatencyMs.P50)
			d99 = append(d99, t.LatencyMs.P99-b.LatencyMs.P99)
			dcpu = append(dcpu, totalCPU(t)-totalCPU(b))
		}
	}
	if len(d50) > 0 {
		r.HasBaseline = true
		r.AddedP50Ms, r.AddedP99Ms = Median(d50), Median(d99)
		r.AddedCPU = Median(dcpu)
		r.Spread.AddedP50Ms, r.Spread.AddedP99Ms = span(d50), span(d99)
	}
	var cpus, rsss, wss []float64
	for _, t := range ts {
		cpu, rss, _ := classUsage(t, results.ClassProxy)
		cpus, rsss = append(cpus, cpu), append(rsss, rss)
		ws := 0.0
		for _, u := range t.Components {
			if u.Class == results.ClassProxy {
				ws += u.WorkingSetMaxMB
			}
		}
		wss = append(wss, ws)
	}
	r.ProxyWorkingSetMB = Median(wss)
	r.ProxyByNode = proxyByNode(ts)
	sut, _ := MetricByName("cpu")
	var sutCPU []float64
	for _, t := range ts {
		if v, ok := sut.Value(t, nil); ok {
			sutCPU = append(sutCPU, v)
		}
	}
	r.SUTCPU = Median(sutCPU)
	r.ProxyCPU, r.ProxyRSSMB = Median(cpus), Median(rsss)
	r.Spread.ProxyCPU, r.Spread.ProxyRSSMB = span(cpus), span(rsss)
	_, _, r.Proxies = classUsage(ts[0], results.ClassProxy)
	return r
}

// proxyByNode is the trials' proxy usage by node, medians over trials.
func proxyByNode(ts []*results.Trial) map[string]NodeProxies {
	// By node, each trial's sums.
	cpu, wss, rss := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	count := map[string]int{}
	for _, t := range ts {
		per := map[string]NodeProxies{}
		for _, u := range t.Components {
			if u.Class == results.ClassProxy {
				n := per[u.Node]
				n.CPU, n.WorkingSetMB, n.RSSMB = n.CPU+u.CPUMillicores, n.WorkingSetMB+u.WorkingSetMaxMB, n.RSSMB+u.RSSMaxMB
				n.Count++
				per[u.Node] = n
			}
		}
		for node, n := range per {
			cpu[node], wss[node], rss[node] = append(cpu[node], n.CPU), append(wss[node], n.WorkingSetMB), append(rss[node], n.RSSMB)
			count[node] = n.Count
		}
	}
	if len(cpu) == 0 {
		return nil
	}
	out := map[string]NodeProxies{}
	for node := range cpu {
		out[node] = NodeProxies{CPU: Median(cpu[node]), WorkingSetMB: Median(wss[node]), RSSMB: Median(rss[node]), Count: count[node]}
	}
	return out
}

// totalCPU is the CPU of every component of a trial.
func totalCPU(t *results.Trial) float64 {
	sum := 0.0
	for _, u := range t.Components {
		sum += u.CPUMillicores
	}
	return sum
}

// classUsage sums the CPU and peak RSS of a trial's components of a class.
func classUsage(t *results.Trial, class string) (cpu, rssMB float64, n int) {
	for _, u := range t.Components {
		if u.Class == class {
			cpu += u.CPUMillicores
			rssMB += u.RSSMaxMB
			n++
		}
	}
	return cpu, rssMB, n
}

// Median returns the median of v (0 for an empty slice). v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// span returns [min, max] of v.
func span(v []float64) [2]float64 {
	if len(v) == 0 {
		return [2]float64{}
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return [2]float64{lo, hi}
}
