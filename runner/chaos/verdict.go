package chaos

import (
	"fmt"
	"math"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// Judge judges a trial of a game day from the load client's seconds and
// the faults it met: each probe over the seconds its mode names (seconds
// in which no request was sent are not judged), the verdict, the
// resilience score, and each fault's times to detect and to recover.
func Judge(probes []scenarios.Probe, series []results.Second, faults []results.Fault) *results.Verdict {
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
	// holds[i][k] says whether probe i held in second k (nil: not judged).
	holds := make([]map[int]bool, len(probes))
	var weights float64
	for i, p := range probes {
		holds[i] = map[int]bool{}
		r := results.ProbeResult{Name: p.Name, Mode: p.Mode}
		for k, sec := range series {
			start := sec.Start
			judged := sec.Requests > 0
			switch p.Mode {
			case scenarios.ProbeStart:
				judged = judged && start+1 <= first
			case scenarios.ProbeEnd:
				judged = judged && start >= last
			case scenarios.ProbeOnChaos:
				judged = judged && inChaos(start)
			}
			if !judged {
				continue
			}
			ok := holdsIn(p, sec)
			holds[i][k] = ok
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
	if weights > 0 {
		v.Score /= weights
	}
	// A second fails when a probe judged in it did not hold.
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
		for k, sec := range series {
			if sec.Start+1 <= f.Start || sec.Start >= end+1 {
				continue
			}
			if _, bad := failed(k); bad {
				im.DetectS = math.Max(sec.Start-f.Start, 0)
				break
			}
		}
		for k, sec := range series {
			if sec.Start < math.Floor(end) {
				continue
			}
			if judged, bad := failed(k); judged && !bad {
				im.RecoverS = math.Max(sec.Start-end, 0)
				break
			}
		}
		v.Faults = append(v.Faults, im)
	}
	return v
}

// faultEnd is when a fault's window ends: a one-shot action's is its
// second.
func faultEnd(f results.Fault) float64 { return math.Max(f.End, f.Start+1) }

// holdsIn says whether a probe holds in a second.
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
