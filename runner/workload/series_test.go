package workload

import (
	"testing"
	"time"
)

func TestSeconds(t *testing.T) {
	origin := time.Unix(1000, 0)
	s := seconds{origin: origin}
	for i := 0; i < 100; i++ { // second 0: 1..100 ms
		s.record(origin.Add(time.Duration(i)*time.Millisecond), float64(i+1)/1000, true, "200")
	}
	s.record(origin.Add(2500*time.Millisecond), 0.5, false, "503") // second 2
	s.record(origin.Add(2600*time.Millisecond), 0.002, false, "-1")
	s.record(origin.Add(2700*time.Millisecond), 0.004, true, "200")
	got := s.series()
	if len(got) != 3 {
		t.Fatalf("%d seconds, want 3 (an empty one between): %+v", len(got), got)
	}
	if a := got[0]; a.Requests != 100 || a.Errors != 0 || a.P50Ms < 49.5 || a.P50Ms > 51 || a.P99Ms < 98.5 || a.P99Ms > 100.5 || a.MaxMs != 100 {
		t.Errorf("second 0: %+v, want 100 requests, p50 ~50 ms, p99 ~99 ms, max 100 ms", a)
	}
	if b := got[1]; b.Start != 1 || b.Requests != 0 {
		t.Errorf("second 1: %+v, want empty", b)
	}
	if c := got[2]; c.Requests != 3 || c.Errors != 2 || c.Codes["503"] != 1 || c.Codes["-1"] != 1 || c.Codes["200"] != 0 || c.MaxMs != 500 {
		t.Errorf("second 2: %+v", c)
	}
}
