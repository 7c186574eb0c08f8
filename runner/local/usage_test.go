package local

import (
	"math"
	"testing"
)

// TestPerSecond: readings every 200 ms become one figure per second, the
// CPU a rate between the readings at its edges, the memory its largest
// reading; the final reading closes a partial second.
func TestPerSecond(t *testing.T) {
	var ps perSecond
	cpu := 0.0
	for k := 0; k <= 12; k++ { // 0 .. 2.4 s
		at := float64(k) * 0.2
		if at > 1.0001 {
			cpu += 0.2 * 0.25 // 250 millicores from the second second on
		} else if k > 0 {
			cpu += 0.2 * 0.5 // 500 millicores in the first
		}
		ps.add(at, cpu, 10+at, k == 12)
	}
	if len(ps.out) != 3 {
		t.Fatalf("%d seconds, want 3: %+v", len(ps.out), ps.out)
	}
	// Memory rises 1 MiB a second: second 0's largest reading is 10.8
	// (at 0.8 s), the reading at 1.0 s is second 1's.
	for i, want := range []struct{ start, cpu, mb float64 }{{0, 500, 10.8}, {1, 250, 11.8}, {2, 250, 12.4}} {
		got := ps.out[i]
		if got.Start != want.start || math.Abs(got.CPUMillicores-want.cpu) > 1e-6 || math.Abs(got.MemoryMB-want.mb) > 1e-6 {
			t.Errorf("second %d: %+v, want start %g, %g millicores, %g MiB", i, got, want.start, want.cpu, want.mb)
		}
	}
}
