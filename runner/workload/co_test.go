package workload

import (
	"context"
	"testing"
	"time"
)

// TestCOLatencyChargesStalls replays fortio's schedule for one connection
// at 100 requests/s: a 50 ms stall delays the following requests, and the
// corrected latency charges that delay to them, fortio's own does not.
func TestCOLatencyChargesStalls(t *testing.T) {
	co := newCOLatency(100, time.Second, 1) // n = 100 calls, 10 ms apart
	t0 := time.Unix(1000, 0)
	intended := func(i int64) time.Time {
		return t0.Add(time.Duration((float64(i) + float64(i)/99) / 100 * float64(time.Second)))
	}
	ctx := context.Background()
	sent := t0
	var raw []float64
	for i := int64(0); i < 100; i++ {
		if s := intended(i); s.After(sent) {
			sent = s // fortio sleeps until the intended time, if it is not late
		}
		lat := 0.001
		if i == 10 {
			lat = 0.050 // one stalled response
		}
		co.Start(ctx, 0, i, sent)
		co.Report(ctx, 0, i, sent, lat, true, "")
		raw = append(raw, lat)
		sent = sent.Add(time.Duration(lat * float64(time.Second)))
	}
	direct, h, _ := co.result()
	if direct.Count != 100 || direct.Max < 0.050 || direct.Percentiles[1].Value > 0.001*HistGrowth {
		t.Errorf("latency as sent: count %d, max %v, p90 %v: want 100, 50ms, 1ms", direct.Count, direct.Max, direct.Percentiles[1].Value)
	}
	if h.Count != 100 {
		t.Fatalf("count %d", h.Count)
	}
	// Requests 11..14 were sent late (by 40, 30, 20, 10 ms, less a little):
	// five requests (the stall itself and four behind it) exceed 5 ms.
	late := 0
	for _, b := range h.Data {
		if b.Start >= 0.005 {
			late += int(b.Count)
		}
	}
	if late != 5 {
		t.Errorf("%d corrected latencies above 5ms, want 5 (the stall and the 4 requests it delayed)", late)
	}
	if h.Max < 0.050 || h.Min < 0.001-1e-9 {
		t.Errorf("corrected min %v max %v", h.Min, h.Max)
	}
}
