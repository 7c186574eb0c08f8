package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// searchAll runs the scenario's max search for every (mesh, mode), once per
// trial, in the trial's interleaved order.
func (r *run) searchAll(ctx context.Context) error {
	s := r.Scenario
	for t := 1; t <= s.Trials; t++ {
		for pos, sl := range order(r.slots, t, s.Order, s.Seed) {
			label := fmt.Sprintf("trial %d/%d: %s max search", t, s.Trials, sl.key())
			res, err := r.search(ctx, sl, t, pos, label)
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			r.Log.Logf("%s: %s", label, describeMax(res))
			r.manifest.Max = append(r.manifest.Max, res)
			if err := results.WriteJSON(filepath.Join(r.OutDir, results.ManifestFile), r.manifest); err != nil {
				return err
			}
		}
	}
	return nil
}

// search finds the highest rate at which sl meets the SLO: probes double
// the rate from the start until one misses (or the limit passes), then
// bisect between the highest passing and the lowest failing rate until they
// are within the precision, or the probe budget is spent. When the start
// rate already fails, the bisection runs between 0 and it.
func (r *run) search(ctx context.Context, sl slot, t, pos int, label string) (results.MaxResult, error) {
	m := r.Scenario.Load.Max
	res := results.MaxResult{Mesh: sl.mesh.Name(), Mode: string(sl.mode), Trial: t, Stop: "probes"}
	rate := m.Start
	for probe := 1; probe <= m.MaxProbes; probe++ {
		r.Log.Logf("%s: probe %d at %.0f rps", label, probe, rate)
		var pass bool
		tr, err := r.runSlot(ctx, sl, slotRun{
			trial: t, pos: pos, rate: rate,
			dir: filepath.Join(r.OutDir, results.ProbeDir(sl.mesh.Name(), string(sl.mode), t, probe)),
			annotate: func(tr *results.Trial) {
				reason := missesSLO(m.SLO, tr)
				pass = reason == ""
				tr.Probe = &results.Probe{Index: probe, Pass: pass, Reason: reason}
			},
		})
		if err != nil {
			return res, err
		}
		r.trials = append(r.trials, tr)
		res.Probes = probe
		if pass {
			res.Rate, res.Achieved, res.LatencyMs = rate, tr.Achieved, tr.LatencyMs
		} else {
			res.Failed = rate
		}
		next, stop := nextRate(m, res.Rate, res.Failed)
		if stop != "" {
			res.Stop = stop
			break
		}
		rate = next
	}
	return res, nil
}

// nextRate is the search's next probe given the highest passing rate lo and
// the lowest failing rate hi (0 when there is none yet), or why it stops.
func nextRate(m *scenarios.MaxSearch, lo, hi float64) (float64, string) {
	switch {
	case hi == 0 && lo >= m.Limit:
		return 0, "limit"
	case hi == 0:
		return min(lo*2, m.Limit), ""
	case lo > 0 && (hi-lo)/lo <= m.Precision:
		return 0, "converged"
	case lo == 0 && hi < 2:
		return 0, "none" // not even 1 rps meets the SLO
	}
	return (lo + hi) / 2, ""
}

// missesSLO says how a probe missed the SLO, or "" when it met it.
func missesSLO(slo scenarios.SLO, tr *results.Trial) string {
	var why []string
	for _, b := range []struct {
		name      string
		bound     scenarios.Duration
		measuredS float64
	}{
		{"p50", slo.P50, tr.LatencyMs.P50 / 1000},
		{"p90", slo.P90, tr.LatencyMs.P90 / 1000},
		{"p99", slo.P99, tr.LatencyMs.P99 / 1000},
		{"p99.9", slo.P999, tr.LatencyMs.P999 / 1000},
	} {
		if b.bound > 0 && b.measuredS > b.bound.D().Seconds() {
			why = append(why, fmt.Sprintf("%s %.3gms > %s", b.name, b.measuredS*1000, b.bound))
		}
	}
	if tr.Requests > 0 {
		if rate := float64(tr.Errors) / float64(tr.Requests); rate > slo.ErrorRate {
			why = append(why, fmt.Sprintf("error rate %.3g > %g", rate, slo.ErrorRate))
		}
	} else {
		why = append(why, "no requests completed")
	}
	if tr.Requested > 0 && tr.Achieved/tr.Requested < slo.MinAchieved {
		why = append(why, fmt.Sprintf("achieved %.0f of %.0f rps (< %g)", tr.Achieved, tr.Requested, slo.MinAchieved))
	}
	return strings.Join(why, "; ")
}

func describeMax(res results.MaxResult) string {
	switch {
	case res.Rate == 0:
		return fmt.Sprintf("no probed rate met the SLO (%d probes, lowest failing %.0f rps)", res.Probes, res.Failed)
	case res.Failed == 0:
		return fmt.Sprintf("met the SLO at every probed rate up to %.0f rps (%s, %d probes)", res.Rate, res.Stop, res.Probes)
	}
	return fmt.Sprintf("max %.0f rps (fails at %.0f; %s after %d probes)", res.Rate, res.Failed, res.Stop, res.Probes)
}
