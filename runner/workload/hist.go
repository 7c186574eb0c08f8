package workload

import (
	"math"

	"fortio.org/fortio/stats"
)

// Histogram records latencies (seconds) in log-spaced buckets, each
// HistGrowth-1 (0.5%) wider than the one before, from 1 µs up to about
// 1000 s; values below 1 µs share the first bucket. Any percentile read
// from it is within 0.5% of the true value, wherever it falls: fortio's
// own histogram has fixed buckets 10% to 25% wide over most of its range
// at the 10 µs resolution meshbench gives it (0.2 ms between 1 and 2 ms,
// 10 ms between 10 and 20 ms), so a p99 of 1.6 ms moved by 10% can stay in
// its bucket, read by linear interpolation from how many requests fell in
// it.
//
// It is not safe for concurrent use; the caller serializes Record.
type Histogram struct {
	counts []int64
	n      int64
	min    float64
	max    float64
	sum    float64
	sumSq  float64
}

// HistGrowth is the ratio of each bucket's upper bound to its lower bound.
const HistGrowth = 1.005

const (
	histFloor   = 1e-6 // seconds: the first log bucket's lower bound
	histBuckets = 4200 // 1 µs * 1.005^4199 ≈ 1.3e3 s; beyond it, the last bucket
)

var lnGrowth = math.Log(HistGrowth)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]int64, histBuckets)}
}

func histIndex(v float64) int {
	if !(v >= histFloor) { // also NaN
		return 0
	}
	f := math.Log(v/histFloor) / lnGrowth
	if f >= histBuckets-2 { // also +Inf, before int() makes it negative
		return histBuckets - 1
	}
	return 1 + int(f)
}

// histBounds is bucket i's interval [start, end).
func histBounds(i int) (start, end float64) {
	if i == 0 {
		return 0, histFloor
	}
	start = histFloor * math.Pow(HistGrowth, float64(i-1))
	return start, start * HistGrowth
}

// Record adds one latency in seconds.
func (h *Histogram) Record(v float64) {
	if math.IsNaN(v) {
		return
	}
	v = max(v, 0)
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
	h.sumSq += v * v
	h.counts[histIndex(v)]++
}

// Export returns the histogram in fortio's exported form (non-empty
// buckets with cumulative percents, the first starting at the minimum and
// the last ending at the maximum, as fortio's own export does) with
// Percentiles computed by fortio's interpolation, so that everything that
// reads fortio's histograms reads this one.
func (h *Histogram) Export() *stats.HistogramData {
	out := &stats.HistogramData{Count: h.n, Min: h.min, Max: h.max, Sum: h.sum}
	if h.n == 0 {
		return out
	}
	out.Avg = h.sum / float64(h.n)
	out.StdDev = math.Sqrt(max(h.sumSq/float64(h.n)-out.Avg*out.Avg, 0))
	var total int64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		total += c
		start, end := histBounds(i)
		if len(out.Data) == 0 {
			start = h.min
		}
		out.Data = append(out.Data, stats.Bucket{
			Interval: stats.Interval{Start: math.Min(start, h.max), End: end},
			Percent:  100 * float64(total) / float64(h.n),
			Count:    c,
		})
	}
	last := &out.Data[len(out.Data)-1]
	last.End = h.max
	return out.CalcPercentiles(Percentiles)
}
