package chaos

import (
	"fmt"
	"math"
	"slices"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// Observed is what a trial of a game day saw: the load client's seconds,
// the active probes' readings, and the probes that cannot judge the row
// (by name, with the reason).
type Observed struct {
	Series []results.Second
	// Rate is the load's requests due a second (0: as fast as it goes)
	// and Window the measured window's length in seconds. A whole second
	// of the window in which a fixed-rate load sent fewer than half the
	// requests due has stalled (its client waits on answers that do not
	// come, so its errors and latencies alone would not show it), and
	// holds no load probe. The series ends at the last second with a
	// request: the whole seconds after it stalled too.
	Rate, Window float64
	// Readings are the active probes'; those outside the window are not
	// judged.
	Readings      []results.ProbeReading
	NotApplicable map[string]string
}

// Stalled says a second of the load stalled (see Observed.Rate).
func (o Observed) Stalled(s results.Second) bool {
	return o.Rate > 0 && s.Start+1 <= o.Window && float64(s.Requests) < o.Rate/2
}

// Judge judges a trial of a game day from what it observed and the
// faults it met: each probe over the seconds its mode names (a load
// probe judges the seconds in which requests were sent, and those that
// stalled, which fail; an active probe those with a reading of it, a
// second holding when every reading in it did), the verdict, the
// resilience score, and each fault's times to detect and to recover. A
// row no probe can judge gets no verdict (nil).
func Judge(probes []scenarios.Probe, obs Observed, faults []results.Fault) *results.Verdict {
	v := &results.Verdict{Pass: true}
	first, last := math.Inf(1), math.Inf(-1)
	for _, f := range faults {
		first, last = math.Min(first, f.Start), math.Max(last, faultEnd(f))
	}
	inChaos := func(k float64) bool {
		for _, f := range faults {
			if k < faultEnd(f) && k+1 > f.Start {
				return true
			}
		}
		return false
	}
	inMode := func(p scenarios.Probe, start float64) bool {
		switch p.Mode {
		case scenarios.ProbeStart:
			return start+1 <= first
		case scenarios.ProbeEnd:
			return start >= last
		case scenarios.ProbeOnChaos:
			return inChaos(start)
		}
		return true
	}
	// holds[i][k] says whether probe i held in second k (absent: not
	// judged).
	holds := make([]map[int]bool, len(probes))
	var weights float64
	for i, p := range probes {
		holds[i] = map[int]bool{}
		r := results.ProbeResult{Name: p.Name, Mode: p.Mode}
		if why, ok := obs.NotApplicable[p.Name]; ok {
			r.NotApplicable, r.Reason = true, why
			v.Probes = append(v.Probes, r)
			continue
		}
		for k, ok := range probeSeconds(p, obs) {
			if inMode(p, float64(k)) {
				holds[i][k] = ok
			}
		}
		for _, ok := range holds[i] {
			r.Judged++
			if !ok {
				r.Failed++
			}
		}
		switch {
		case r.Judged == 0:
			r.Reason = "no second to judge"
		default:
			r.SuccessPct = 100 * float64(r.Judged-r.Failed) / float64(r.Judged)
			r.Pass = 100-r.SuccessPct <= p.Tolerance
			if !r.Pass {
				r.Reason = fmt.Sprintf("failed in %d of %d seconds (tolerance %g%%)", r.Failed, r.Judged, p.Tolerance)
			}
		}
		v.Pass = v.Pass && r.Pass
		v.Score += p.Weight * r.SuccessPct
		weights += p.Weight
		v.Probes = append(v.Probes, r)
	}
	if weights == 0 && len(probes) > 0 {
		return nil // no probe can judge this row: no verdict, not a pass
	}
	if weights > 0 {
		v.Score /= weights
	}
	// A second fails when a probe judged in it did not hold.
	var seconds []int
	for i := range probes {
		for k := range holds[i] {
			if !slices.Contains(seconds, k) {
				seconds = append(seconds, k)
			}
		}
	}
	slices.Sort(seconds)
	failed := func(k int) (judged, bad bool) {
		for i := range probes {
			if ok, j := holds[i][k]; j {
				judged = true
				bad = bad || !ok
			}
		}
		return judged, bad
	}
	for _, f := range faults {
		im := results.FaultImpact{Name: f.Name, DetectS: -1, RecoverS: -1}
		end := faultEnd(f)
		for _, k := range seconds {
			start := float64(k)
			if start+1 <= f.Start || start >= end+1 {
				continue
			}
			if _, bad := failed(k); bad {
				im.DetectS = math.Max(start-f.Start, 0)
				break
			}
		}
		for _, k := range seconds {
			start := float64(k)
			if start < math.Floor(end) {
				continue
			}
			if judged, bad := failed(k); judged && !bad {
				im.RecoverS = math.Max(start-end, 0)
				break
			}
		}
		v.Faults = append(v.Faults, im)
	}
	return v
}

// probeSeconds says, for each second (by its start) a probe can judge,
// whether it held.
func probeSeconds(p scenarios.Probe, obs Observed) map[int]bool {
	out := map[int]bool{}
	if p.Active() {
		for _, r := range obs.Readings {
			if r.Probe != p.Name || r.At < 0 || (obs.Window > 0 && r.At >= obs.Window) {
				continue
			}
			k := int(math.Floor(r.At))
			if ok, seen := out[k]; seen {
				out[k] = ok && r.OK
			} else {
				out[k] = r.OK
			}
		}
		return out
	}
	for _, sec := range obs.Series {
		switch k := int(math.Floor(sec.Start)); {
		case obs.Stalled(sec):
			out[k] = false
		case sec.Requests > 0:
			out[k] = holdsIn(p, sec)
		}
	}
	if obs.Rate > 0 {
		// Whole seconds past the series' end sent nothing.
		for k := len(obs.Series); float64(k+1) <= obs.Window; k++ {
			if _, ok := out[k]; !ok {
				out[k] = false
			}
		}
	}
	return out
}

// faultEnd is when a fault's window ends: a one-shot action's is its
// second.
func faultEnd(f results.Fault) float64 { return math.Max(f.End, f.Start+1) }

// holdsIn says whether a load probe holds in a second.
func holdsIn(p scenarios.Probe, s results.Second) bool {
	switch p.Type {
	case scenarios.ProbeSuccessRate:
		return 100*float64(s.Requests-s.Errors)/float64(s.Requests) >= p.Min
	case scenarios.ProbeLatency:
		v := s.P99Ms
		if p.Percentile == 50 {
			v = s.P50Ms
		}
		return v <= float64(p.Max.D().Microseconds())/1000
	}
	return false
}
