package reports

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMannWhitneyExact checks the exact distribution against hand-counted
// cases and the p-values against textbook values.
func TestMannWhitneyExact(t *testing.T) {
	// Sizes 2 and 2: the 6 orderings give U = 0,1,2,2,3,4.
	if got := uCounts(2, 2); !equal(got, []float64{1, 1, 2, 1, 1}) {
		t.Errorf("uCounts(2,2) = %v", got)
	}
	total := 0.0
	for _, c := range uCounts(5, 5) {
		total += c
	}
	if total != 252 {
		t.Errorf("uCounts(5,5) sums to %g, want C(10,5) = 252", total)
	}
	// Complete separation of 5 and 5: p = 2/252.
	u, p := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10})
	if u != 25 || math.Abs(p-2.0/252) > 1e-12 {
		t.Errorf("separated samples: U %g, p %g; want 25, %g", u, p, 2.0/252)
	}
	// Interleaved samples: no evidence.
	if _, p := MannWhitney([]float64{1, 3, 5, 7, 9}, []float64{2, 4, 6, 8, 10}); p < 0.5 {
		t.Errorf("interleaved samples: p %g", p)
	}
	// Large samples take the normal approximation, with ties.
	a, b := make([]float64, 80), make([]float64, 80)
	for i := range a {
		a[i], b[i] = float64(i%20), float64(i%20)+5
	}
	if _, p := MannWhitney(a, b); p > 1e-3 {
		t.Errorf("shifted large samples: p %g", p)
	}
}

// TestShiftIntervalCoverage draws many pairs of samples with a known
// shift and checks that the interval covers it at least as often as its
// stated level (it is distribution-free, so this holds for any shape).
func TestShiftIntervalCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{3, 5, 8} {
		covered, runs, level := 0, 2000, 0.0
		for range runs {
			a, b := make([]float64, n), make([]float64, n)
			for i := range a {
				a[i] = rng.ExpFloat64()       // skewed, like latencies
				b[i] = rng.ExpFloat64() + 0.7 // shifted by 0.7
			}
			iv := ShiftInterval(a, b, 0.95)
			level = iv.Level
			if iv.Straddles(0.7) {
				covered++
			}
		}
		rate := float64(covered) / float64(runs)
		if rate < level-0.02 {
			t.Errorf("n=%d: covered %.3f of the time, stated level %.3f", n, rate, level)
		}
		if n == 3 && math.Abs(level-0.9) > 1e-9 || n == 5 && math.Abs(level-(1-8.0/252)) > 1e-9 {
			t.Errorf("n=%d: level %g", n, level)
		}
	}
}

func TestRatioInterval(t *testing.T) {
	a := []float64{100, 102, 98, 101, 99}
	b := []float64{110, 112, 108, 111, 109}
	iv := RatioInterval(a, b, 0.95)
	if math.Abs(iv.Value-1.1) > 0.01 || iv.Low > 1.1 || iv.High < 1.1 || iv.Low < 1.05 {
		t.Errorf("ratio %+v, want about 1.10 with an interval above 1.05", iv)
	}
	if iv := RatioInterval([]float64{0, 1}, b, 0.95); !math.IsNaN(iv.Value) {
		t.Errorf("non-positive values gave %+v", iv)
	}
}

func TestBootstrapMedianIsSeeded(t *testing.T) {
	x := []float64{5, 1, 4, 2, 3, 9, 7}
	i1 := BootstrapMedian(x, 0.95, 2000, rand.New(rand.NewPCG(7, 7)))
	i2 := BootstrapMedian(x, 0.95, 2000, rand.New(rand.NewPCG(7, 7)))
	if i1 != i2 {
		t.Errorf("same seed, different intervals: %+v %+v", i1, i2)
	}
	if i1.Value != 4 || i1.Low > 4 || i1.High < 4 || i1.Low < 1 || i1.High > 9 || i1.N != 7 {
		t.Errorf("interval %+v", i1)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBinomialP checks the exact two-sided test against values computed
// by hand and its symmetry.
func TestBinomialP(t *testing.T) {
	cases := []struct {
		k, n int
		p    float64
		want float64
	}{
		{5, 10, 0.5, 1},           // the mode: every outcome is as or less likely
		{0, 10, 0.5, 2 / 1024.0},  // 0 or 10 of 10
		{10, 10, 0.5, 2 / 1024.0}, // symmetric
		{1, 10, 0.5, 22 / 1024.0}, // 0, 1, 9, 10
		{150, 200, 0.75, 1},       // the mode of B(200, 0.75)
	}
	for _, c := range cases {
		if got := BinomialP(c.k, c.n, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("BinomialP(%d, %d, %g) = %g, want %g", c.k, c.n, c.p, got, c.want)
		}
	}
	// A 50/50 split observed under a 75% claim is rejected at 1e-6.
	if p := BinomialP(100, 200, 0.75); p >= 1e-6 {
		t.Errorf("100 of 200 under 0.75: p = %g, want < 1e-6", p)
	}
}
