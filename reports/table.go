package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/meshbench/meshbench/runner/results"
)

// WriteTable writes the comparison table: one row per (mesh, mode, rate),
// preceded by the max-search table when the run searched.
func WriteTable(w io.Writer, m *results.Manifest, rows []*Row) error {
	if m != nil && len(m.ControlPlane) > 0 && len(rows) == 0 {
		return writeControlPlane(w, m)
	}
	if m != nil && len(m.Max) > 0 {
		if err := writeMax(w, m); err != nil {
			return err
		}
	}
	if len(rows) > 0 {
		if err := writeRows(w, rows); err != nil {
			return err
		}
	}
	if m != nil {
		for _, c := range m.Calibrations {
			loadCPU := 0.0
			for _, u := range c.Components {
				if u.Class == results.ClassLoadGen {
					loadCPU = u.CPUMillicores
				}
			}
			fmt.Fprintf(w, "Harness floor at %g rps (fortio to the application with no mesh, before the trials): %.1f qps, p50 %s, p99 %s, P99 CO %s, load generator %.0fm.\n",
				c.Requested, c.Achieved, ms(c.LatencyMs.P50), ms(c.LatencyMs.P99), ms(c.COLatencyMs.P99), loadCPU)
		}
	}
	if m != nil {
		for _, l := range SharedNodeLines(m, rows) {
			fmt.Fprintln(w, l)
		}
		writeSaturation(w, m, rows)
		for _, u := range m.Unavailable {
			fmt.Fprintf(w, "%s/%s: unavailable: %s\n", u.Mesh, u.Mode, u.Reason)
		}
		writeFaults(w, m)
	}
	if err := writeSpread(w, rows); err != nil {
		return err
	}
	if m != nil {
		fmt.Fprintf(w, "\nLatencies are medians over trials (%s); P99 CO is p99 from each request's\n"+
			"intended send time at the fixed rate (corrected for coordinated omission, as wrk2). +P50/+P99 are the median per-trial\n"+
			"differences to the baseline. +CPU is the median per-trial difference to the baseline of all processes'\n"+
			"CPU (load generator, apps, proxies, control plane): what a mode costs wherever it runs, proxyless in the workloads.\n"+
			"PROXY CPU is the proxies' summed mean CPU in millicores and PROXY RSS their summed peak RSS during the\n"+
			"measured window; WSS is the working set (memory less inactive file cache). CPU and memory: %s.\n"+
			"Network: %s.\n",
			latencySource(m), m.Platform.ResourceSource, network(m.Platform))
	}
	return nil
}

func writeRows(w io.Writer, rows []*Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	rateCol := sweep(rows)
	if rateCol {
		fmt.Fprint(tw, "RATE\t")
	}
	fmt.Fprintln(tw, "MESH\tMODE\tTRIALS\tQPS\tP50\tP90\tP99\tP99 CO\tP99.9\tMAX\tERRORS\t+P50\t+P99\t+CPU\tPROXIES\tPROXY CPU\tPROXY RSS\t")
	for _, r := range rows {
		l := r.LatencyMs
		added50, added99, addedCPU := "-", "-", "-"
		if r.HasBaseline && r.Mode != BaselineMode {
			added50, added99 = signedMs(r.AddedP50Ms), signedMs(r.AddedP99Ms)
			addedCPU = fmt.Sprintf("%+.0fm", r.AddedCPU)
		}
		cpu, rss := "-", "-"
		if r.Proxies > 0 {
			cpu = fmt.Sprintf("%.0fm", r.ProxyCPU)
			rss = fmt.Sprintf("%.1fMB", r.ProxyRSSMB)
		}
		if rateCol {
			fmt.Fprintf(tw, "%g\t", r.Rate)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t\n",
			r.Mesh, r.Mode, r.Trials, r.QPS, ms(l.P50), ms(l.P90), ms(l.P99), ms(r.COP99Ms), ms(l.P999), ms(l.Max),
			r.Errors, added50, added99, addedCPU, r.Proxies, cpu, rss)
	}
	return tw.Flush()
}

func ms(v float64) string {
	switch {
	case v < 1:
		return strconv.FormatFloat(v*1000, 'f', 0, 64) + "us"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
}

func signedMs(v float64) string {
	if v < 0 {
		return "-" + ms(-v)
	}
	return "+" + ms(v)
}

// writeSpread writes, for runs of 3 or more trials, each mode's medians
// with their [min, max] over trials and the proxies' cost per 1000 rps.
func writeSpread(w io.Writer, rows []*Row) error {
	if len(rows) == 0 || rows[0].Trials < 3 {
		return nil
	}
	fmt.Fprintf(w, "\nMedian [min, max] over %d trials (the median lies outside [min, max] with probability 2/2^n):\n", rows[0].Trials)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MESH\tMODE\t+P50\t+P99\tPROXY CPU\tCPU/PROXY/1000RPS\tRSS/PROXY\tWSS/PROXY\t")
	for _, r := range rows {
		if r.Mode == BaselineMode {
			continue
		}
		added50, added99 := "-", "-"
		if r.HasBaseline {
			added50 = fmt.Sprintf("%s [%s, %s]", signedMs(r.AddedP50Ms), signedMs(r.Spread.AddedP50Ms[0]), signedMs(r.Spread.AddedP50Ms[1]))
			added99 = fmt.Sprintf("%s [%s, %s]", signedMs(r.AddedP99Ms), signedMs(r.Spread.AddedP99Ms[0]), signedMs(r.Spread.AddedP99Ms[1]))
		}
		cpu, per, rss, wss := "-", "-", "-", "-"
		if r.Proxies > 0 {
			if r.ProxyWorkingSetMB > 0 {
				wss = fmt.Sprintf("%.1fMB", r.ProxyWorkingSetMB/float64(r.Proxies))
			}
			cpu = fmt.Sprintf("%.0fm [%.0f, %.0f]", r.ProxyCPU, r.Spread.ProxyCPU[0], r.Spread.ProxyCPU[1])
			if r.QPS > 0 {
				per = fmt.Sprintf("%.0fm", r.ProxyCPU/float64(r.Proxies)/r.QPS*1000)
			}
			rss = fmt.Sprintf("%.1fMB", r.ProxyRSSMB/float64(r.Proxies))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Mesh, r.Mode, added50, added99, cpu, per, rss, wss)
	}
	return tw.Flush()
}

// SharedNodeLines set, for each node services share, each data plane's
// per-node proxy there beside the sidecars of the same pods in the same
// run: what the node proxy saves (or costs). One sentence per line.
func SharedNodeLines(m *results.Manifest, rows []*Row) []string {
	if m == nil || m.Scenario == nil {
		return nil
	}
	var out []string
	t := m.Scenario.Topology
	// A per-node row's sidecars are its own mesh's, or, for a variant
	// (an L4 node proxy, say) with no sidecar row of its own, the base
	// mesh's.
	base := map[string]string{}
	sidecars := map[string]bool{}
	for _, ref := range m.Scenario.Meshes {
		base[ref.Row()] = ref.Name
		if ref.Mode == "sidecar" {
			sidecars[ref.Row()] = true
		}
	}
	sidecarsOf := func(row string) string {
		if sidecars[row] || base[row] == "" {
			return row
		}
		return base[row]
	}
	for _, node := range t.SharedNodes() {
		var pods []string
		for _, p := range t.Workloads() {
			if t.NodeOf(p) == node {
				pods = append(pods, p)
			}
		}
		for _, pn := range rows {
			if pn.Mode != "per-node" {
				continue
			}
			at, ok := pn.ProxyByNode[node]
			if !ok {
				continue
			}
			for _, sc := range rows {
				if sc.Mesh != sidecarsOf(pn.Mesh) || sc.Mode != "sidecar" || sc.Rate != pn.Rate {
					continue
				}
				var side NodeProxies
				n := 0
				for _, p := range pods {
					if u, ok := sc.ProxyByNode[p]; ok {
						side.CPU, side.WorkingSetMB, side.RSSMB = side.CPU+u.CPU, side.WorkingSetMB+u.WorkingSetMB, side.RSSMB+u.RSSMB
						n++
					}
				}
				if n != len(pods) || side.CPU <= 0 {
					continue
				}
				mem, sideMem, what := at.WorkingSetMB, side.WorkingSetMB, "working set"
				if mem <= 0 || sideMem <= 0 {
					mem, sideMem, what = at.RSSMB, side.RSSMB, "RSS"
				}
				proxies := "node proxy"
				if at.Count > 1 {
					// Waypoints placed on the node are counted with it:
					// what the mesh runs there.
					proxies = fmt.Sprintf("%d proxies there (node proxy and waypoints)", at.Count)
				}
				out = append(out, fmt.Sprintf("Shared node %s (%d pods: %s): %s's %s %.0fm CPU, %.1fMB %s; the same pods' %d %s sidecars %.0fm, %.1fMB (%.2fx CPU, %.2fx memory).",
					node, len(pods), strings.Join(pods, ", "), pn.Mesh, proxies, at.CPU, mem, what, n, sc.Mesh, side.CPU, sideMem, at.CPU/side.CPU, mem/sideMem))
			}
		}
	}
	return out
}

// SaturationShare is the share of its CPUs above which the system under
// test counts as CPU-bound.
const SaturationShare = 0.9

// writeSaturation names the rows whose system under test used nearly all
// the CPUs it was pinned to: their latency includes waiting for a CPU.
func writeSaturation(w io.Writer, m *results.Manifest, rows []*Row) {
	cpus := strings.Split(strings.TrimPrefix(m.Platform.Placement[results.ClassProxy], "cpu "), ",")
	if m.Platform.Placement[results.ClassProxy] == "" {
		cpus = nil
	}
	if len(cpus) == 0 {
		return
	}
	limit := float64(len(cpus)) * 1000
	var hot []string
	for _, r := range rows {
		if r.SUTCPU >= SaturationShare*limit {
			hot = append(hot, fmt.Sprintf("%s/%s@%g (%.0fm)", r.Mesh, r.Mode, r.Rate, r.SUTCPU))
		}
	}
	if len(hot) > 0 {
		fmt.Fprintf(w, "CPU-bound: the apps and proxies of %s used %.0f%% or more of the %.0fm of CPU %s they are pinned to; their latency includes waiting for it.\n",
			strings.Join(hot, ", "), SaturationShare*100, limit, strings.Join(cpus, ","))
	}
}

// latencySource says where a run's percentiles come from: meshbench's own
// histogram of every request, or, in results written before it existed
// (their resolution is a bucket width such as "10us"), fortio's.
func latencySource(m *results.Manifest) string {
	if strings.HasSuffix(m.HistogramResolution, "us") {
		return "fortio histogram, " + m.HistogramResolution + " buckets"
	}
	return "every request, " + m.HistogramResolution
}

// network names the platform's network for the table's notes.
func network(p results.Platform) string {
	if p.Kubernetes != "" {
		return fmt.Sprintf("%s (Kubernetes %s, %d nodes)", p.NetworkReason, p.Kubernetes, len(p.KubeNodes))
	}
	return p.Network
}

// writeFaults says which faults every trial met (each trial's record has
// what executed them, on which workloads, and the window second by second).
func writeFaults(w io.Writer, m *results.Manifest) {
	if m.Scenario == nil || len(m.Scenario.Faults) == 0 {
		return
	}
	var fs []string
	for _, f := range m.Scenario.Faults {
		desc := f.Key() + " at " + f.At.String()
		if d, ok := f.Duration(); ok {
			desc += " for " + d.String()
		}
		fs = append(fs, desc)
	}
	fmt.Fprintf(w, "Faults in every trial (seed %d): %s; each trial.json has their targets, times and executors, and the window second by second.\n",
		m.Scenario.Seed, strings.Join(fs, ", "))
}

// WriteVerdicts writes each trial's game-day verdict: pass or fail, the
// resilience score, the probes that failed and each fault's times to
// detect and recover.
func WriteVerdicts(w io.Writer, trials []*results.Trial) {
	header := false
	for _, t := range trials {
		v := t.Verdict
		if v == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nGame day (each probe judged second by second; score: the probes' success percents, weighted):")
			header = true
		}
		verdict := "PASS"
		if !v.Pass {
			verdict = "FAIL"
		}
		var notes []string
		for _, p := range v.Probes {
			switch {
			case p.NotApplicable:
				notes = append(notes, fmt.Sprintf("%s n/a: %s", p.Name, p.Reason))
			case !p.Pass:
				notes = append(notes, fmt.Sprintf("%s (%s) %s", p.Name, p.Mode, p.Reason))
			}
		}
		// A Schedule's firings as one line: how many were detected and
		// recovered from, and the longest times.
		type family struct {
			n, detected, recovered int
			detectS, recoverS      float64
		}
		fams := map[string]*family{}
		var order []string
		for _, f := range v.Faults {
			name := faultFamily(f.Name)
			fm := fams[name]
			if fm == nil {
				fm = &family{}
				fams[name] = fm
				order = append(order, name)
			}
			fm.n++
			if f.DetectS >= 0 {
				fm.detected++
				fm.detectS = max(fm.detectS, f.DetectS)
			}
			if f.RecoverS >= 0 {
				fm.recovered++
				fm.recoverS = max(fm.recoverS, f.RecoverS)
			}
		}
		for _, name := range order {
			fm := fams[name]
			if fm.n == 1 {
				d, r := "not detected", "not recovered"
				if fm.detected > 0 {
					d = fmt.Sprintf("detected %.1fs", fm.detectS)
				}
				if fm.recovered > 0 {
					r = fmt.Sprintf("recovered %.1fs after", fm.recoverS)
				}
				notes = append(notes, fmt.Sprintf("%s: %s, %s", name, d, r))
				continue
			}
			note := fmt.Sprintf("%s: %d firings, %d detected", name, fm.n, fm.detected)
			if fm.detected > 0 {
				note += fmt.Sprintf(" (at most %.1fs)", fm.detectS)
			}
			note += fmt.Sprintf(", %d recovered from", fm.recovered)
			if fm.recovered > 0 {
				note += fmt.Sprintf(" (at most %.1fs after)", fm.recoverS)
			}
			notes = append(notes, note)
		}
		fmt.Fprintf(w, "  %s trial %d: %s, resilience score %.1f%%; %s\n", t.Key(), t.Trial, verdict, v.Score, strings.Join(notes, "; "))
	}
}
