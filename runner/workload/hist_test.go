package workload

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exact is the nearest-rank percentile of sorted values.
func exact(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// TestHistogramPercentiles records a long-tailed sample (a 100 µs floor
// plus an exponential with a 300 µs mean, as a proxied request's latency
// looks) and checks every exported percentile against the exact one, and
// the exported form against fortio's conventions.
func TestHistogramPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	var vals []float64
	sum := 0.0
	for range 20000 {
		v := 100e-6 + rng.ExpFloat64()*300e-6
		h.Record(v)
		vals = append(vals, v)
		sum += v
	}
	slices.Sort(vals)
	d := h.Export()
	if d.Count != 20000 || d.Min != vals[0] || d.Max != vals[len(vals)-1] || math.Abs(d.Sum-sum) > 1e-9 {
		t.Fatalf("count %d min %v max %v sum %v; want 20000 %v %v %v", d.Count, d.Min, d.Max, d.Sum, vals[0], vals[len(vals)-1], sum)
	}
	if len(d.Percentiles) != len(Percentiles) {
		t.Fatalf("%d percentiles, want %d", len(d.Percentiles), len(Percentiles))
	}
	// Interpolated within a bucket, a percentile lies between the samples
	// ranked just below and just above it, give or take a bucket's width.
	step := 100 / float64(len(vals))
	for _, p := range d.Percentiles {
		lo, hi := exact(vals, p.Percentile-step)/HistGrowth, exact(vals, p.Percentile+step)*HistGrowth
		if p.Value < lo || p.Value > hi {
			t.Errorf("p%g = %v, want within [%v, %v] (exact %v)", p.Percentile, p.Value, lo, hi, exact(vals, p.Percentile))
		}
	}
	if d.Data[0].Start != d.Min || d.Data[len(d.Data)-1].End != d.Max || d.Data[len(d.Data)-1].Percent != 100 {
		t.Errorf("buckets span [%v, %v] up to %v%%, want [min, max] up to 100%%", d.Data[0].Start, d.Data[len(d.Data)-1].End, d.Data[len(d.Data)-1].Percent)
	}
	var n int64
	for i, b := range d.Data {
		n += b.Count
		if b.Count <= 0 || b.End < b.Start || (i > 0 && b.Start < d.Data[i-1].Start) {
			t.Fatalf("bucket %d: %+v", i, b)
		}
		// Every bucket but the first and last is 0.5% wide.
		if i > 0 && i < len(d.Data)-1 && math.Abs(b.End/b.Start-HistGrowth) > 1e-9 {
			t.Fatalf("bucket %d is %v wide, want %v", i, b.End/b.Start, HistGrowth)
		}
	}
	if n != d.Count {
		t.Errorf("buckets hold %d, count %d", n, d.Count)
	}
}

// TestHistogramSeesATenPercentShift is why the histogram exists: every
// latency 10% slower gives a p99 10% higher, to within a bucket, also
// where fortio's fixed buckets are 1 ms wide.
func TestHistogramSeesATenPercentShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b := NewHistogram(), NewHistogram()
	for range 3000 {
		v := 200e-6 + rng.ExpFloat64()*300e-6 // p99 ≈ 1.6 ms
		a.Record(v)
		b.Record(v * 1.1)
	}
	pa, pb := a.Export().Percentiles[2], b.Export().Percentiles[2]
	if pa.Percentile != 99 || pa.Value < 1e-3 || pa.Value > 2e-3 {
		t.Fatalf("p99 %+v, want between 1 and 2 ms", pa)
	}
	if r := pb.Value / pa.Value; math.Abs(r-1.1) > 0.011 {
		t.Errorf("p99 ratio %v, want 1.1 within 1%%", r)
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if d := h.Export(); d.Count != 0 || len(d.Data) != 0 {
		t.Fatalf("empty histogram exported %+v", d)
	}
	for _, v := range []float64{0, 5e-7, math.NaN(), -1, 2000, 1e-6, math.Inf(1)} {
		h.Record(v)
	}
	d := h.Export()
	// NaN is dropped; -1 counts as 0; +Inf lands in the last bucket.
	if d.Count != 6 || d.Min != 0 || !math.IsInf(d.Max, 1) {
		t.Fatalf("count %d min %v max %v, want 6, 0, +Inf", d.Count, d.Min, d.Max)
	}
	if last := d.Data[len(d.Data)-1]; last.Start > last.End || last.Count != 2 {
		t.Errorf("overflow bucket %+v", last)
	}
	if got := d.Percentiles[0].Value; got > 1e-6 {
		t.Errorf("p50 %v, want below 1 µs", got)
	}
}

// BenchmarkLatencyReport is the load client's cost per request for
// recording its latency twice (as sent and corrected), under the lock that
// fortio's connections share.
func BenchmarkLatencyReport(b *testing.B) {
	co := newCOLatency(50000, time.Minute, 16)
	ctx := context.Background()
	t0 := time.Now()
	co.Start(ctx, 0, 0, t0)
	b.ResetTimer()
	for i := range b.N {
		co.Report(ctx, 0, int64(i), t0, 250e-6+float64(i%1000)*1e-6, true, "")
	}
}
