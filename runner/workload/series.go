package workload

import (
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// seconds collects a per-second series; the caller serializes record.
type seconds struct {
	origin time.Time
	secs   []*secondStats
}

// secondStats is one second: counts, and the latencies' buckets of the
// fine histogram, sparse (a second touches a few hundred of its 4200).
type secondStats struct {
	n, errs       int64
	codes         map[string]int64
	buckets       map[int]int64
	min, max, sum float64
}

// record adds a request sent at start.
func (s *seconds) record(start time.Time, latency float64, ok bool, code string) {
	i := int(start.Sub(s.origin) / time.Second)
	if i < 0 {
		i = 0
	}
	for len(s.secs) <= i {
		s.secs = append(s.secs, &secondStats{buckets: map[int]int64{}})
	}
	st := s.secs[i]
	if st.n == 0 || latency < st.min {
		st.min = latency
	}
	st.max = max(st.max, latency)
	st.n++
	st.sum += latency
	st.buckets[histIndex(latency)]++
	if !ok {
		st.errs++
		if st.codes == nil {
			st.codes = map[string]int64{}
		}
		st.codes[results.StatusKey(code)]++
	}
}

// series is the seconds in order, percentiles computed as the whole
// window's are (fortio's interpolation over the fine buckets).
func (s *seconds) series() []results.Second {
	out := make([]results.Second, len(s.secs))
	h := NewHistogram()
	for i, st := range s.secs {
		out[i] = results.Second{Start: float64(i), Requests: st.n, Errors: st.errs, Codes: st.codes}
		if st.n == 0 {
			continue
		}
		clear(h.counts)
		for b, c := range st.buckets {
			h.counts[b] = c
		}
		h.n, h.min, h.max, h.sum, h.sumSq = st.n, st.min, st.max, st.sum, 0
		d := h.Export()
		for _, p := range d.Percentiles {
			switch p.Percentile {
			case 50:
				out[i].P50Ms = p.Value * 1000
			case 99:
				out[i].P99Ms = p.Value * 1000
			}
		}
		out[i].MaxMs = st.max * 1000
	}
	return out
}
