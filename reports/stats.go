package reports

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/combin"
	"gonum.org/v1/gonum/stat/distuv"
)

// The statistics below are built on gonum: it has quantiles, moments and
// distributions, but no bootstrap and no Mann-Whitney test. They are small
// and deterministic: every random draw comes from a seeded generator, so
// the same results give the same report.

// Interval is an estimate with its confidence interval.
type Interval struct {
	Value float64 `json:"value"`
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
	// Level is the interval's confidence: the one asked for, or what the
	// sample sizes allow (a rank-based interval of 3 against 3 cannot
	// reach 95%).
	Level float64 `json:"level"`
	// N is the sample size (for two samples, the smaller).
	N int `json:"n"`
}

// MarshalJSON writes values that could not be estimated (NaN) as null.
func (i Interval) MarshalJSON() ([]byte, error) {
	f := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{"value": f(i.Value), "low": f(i.Low), "high": f(i.High), "level": f(i.Level), "n": i.N})
}

// Straddles reports whether the interval contains v.
func (i Interval) Straddles(v float64) bool { return i.Low <= v && v <= i.High }

// DefaultLevel is the confidence of every interval meshbench reports.
const DefaultLevel = 0.95

// DefaultResamples is the number of bootstrap resamples.
const DefaultResamples = 10000

// median is Median, NaN for no values.
func median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	return Median(x)
}

// BootstrapMedian is the median of x with a percentile-bootstrap interval
// at level: the median of resamples of x drawn with replacement, and the
// interval between the (1-level)/2 and (1+level)/2 quantiles of those
// medians. With few samples the interval is coarse (its ends are values of
// x) and, for 3 or fewer, no narrower than the data; it is reported with N
// so that readers can judge.
func BootstrapMedian(x []float64, level float64, resamples int, rng *rand.Rand) Interval {
	out := Interval{Value: median(x), Level: level, N: len(x), Low: math.NaN(), High: math.NaN()}
	if len(x) == 0 {
		return out
	}
	if len(x) == 1 {
		out.Low, out.High = x[0], x[0]
		return out
	}
	meds := make([]float64, resamples)
	buf := make([]float64, len(x))
	for r := range meds {
		for i := range buf {
			buf[i] = x[rng.IntN(len(x))]
		}
		meds[r] = median(buf)
	}
	slices.Sort(meds)
	out.Low = stat.Quantile((1-level)/2, stat.Empirical, meds, nil)
	out.High = stat.Quantile((1+level)/2, stat.Empirical, meds, nil)
	return out
}

// uCounts returns, for samples of sizes n and m without ties, the number of
// orderings giving each value of the Mann-Whitney U statistic (0..n*m), by
// the recurrence f(n, m, u) = f(n-1, m, u-m) + f(n, m-1, u).
func uCounts(n, m int) []float64 {
	// f[i][j] holds the distribution for sizes (i, j).
	f := make([][][]float64, n+1)
	for i := range f {
		f[i] = make([][]float64, m+1)
		for j := range f[i] {
			f[i][j] = make([]float64, i*j+1)
			if i == 0 || j == 0 {
				f[i][j][0] = 1
				continue
			}
			for u := range f[i][j] {
				if u-j >= 0 && u-j < len(f[i-1][j]) {
					f[i][j][u] += f[i-1][j][u-j]
				}
				if u < len(f[i][j-1]) {
					f[i][j][u] += f[i][j-1][u]
				}
			}
		}
	}
	return f[n][m]
}

// exactLimit bounds n*m for the exact distribution; beyond it the normal
// approximation is accurate and cheaper.
const exactLimit = 2500

// MannWhitney tests whether b tends to be larger or smaller than a: it
// returns U (the number of pairs with b_j > a_i, ties counting half) and
// the two-sided p-value, exact for small samples without ties, otherwise
// from the normal approximation with tie and continuity corrections.
func MannWhitney(a, b []float64) (u, p float64) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return math.NaN(), math.NaN()
	}
	ties := false
	for _, x := range a {
		for _, y := range b {
			switch {
			case y > x:
				u++
			case y == x:
				u += 0.5
				ties = true
			}
		}
	}
	nm := float64(n * m)
	if !ties && n*m <= exactLimit {
		counts := uCounts(n, m)
		// The total is C(n+m, n); gonum's Binomial is exact while it fits.
		total := 0.0
		for _, c := range counts {
			total += c
		}
		if n+m <= 60 {
			total = float64(combin.Binomial(n+m, n))
		}
		lo := math.Min(u, nm-u) // the distribution is symmetric
		tail := 0.0
		for k := 0; float64(k) <= lo; k++ {
			tail += counts[k]
		}
		return u, math.Min(1, 2*tail/total)
	}
	// Normal approximation: variance corrected for ties.
	all := append(slices.Clone(a), b...)
	slices.Sort(all)
	tieTerm := 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j] == all[i] {
			j++
		}
		t := float64(j - i)
		tieTerm += t*t*t - t
		i = j
	}
	N := float64(n + m)
	variance := nm / 12 * ((N + 1) - tieTerm/(N*(N-1)))
	if variance <= 0 {
		return u, 1
	}
	z := (math.Abs(u-nm/2) - 0.5) / math.Sqrt(variance)
	if z < 0 {
		z = 0
	}
	return u, math.Min(1, 2*distuv.UnitNormal.Survival(z))
}

// ShiftInterval estimates how much b is shifted from a (b - a): the
// Hodges-Lehmann estimate (the median of all pairwise differences b_j -
// a_i) with the distribution-free interval that inverts the Mann-Whitney
// test (Bauer, 1972): the c-th smallest and largest pairwise differences,
// for the largest c whose two-sided tail probability stays within
// 1-level. Its Level is the confidence actually reached, which for tiny
// samples is below level (3 against 3: 90%).
func ShiftInterval(a, b []float64, level float64) Interval {
	n, m := len(a), len(b)
	out := Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN(), N: min(n, m)}
	if n == 0 || m == 0 {
		return out
	}
	d := make([]float64, 0, n*m)
	for _, x := range a {
		for _, y := range b {
			d = append(d, y-x)
		}
	}
	slices.Sort(d)
	out.Value = median(d)
	N := len(d)
	c, tail := rankCut(n, m, level)
	if c > N/2 {
		c = max(1, N/2)
	}
	out.Low, out.High = d[c-1], d[N-c]
	out.Level = 1 - 2*tail
	return out
}

// rankCut is where the Mann-Whitney interval of n against m samples at
// level is cut: the c-th smallest and largest pairwise differences, and
// the tail probability P(U <= c-1) that each end leaves out. c-1 is the
// largest u with P(U <= u) <= (1-level)/2; c = 1 (the full range) when
// even P(U = 0) is larger.
func rankCut(n, m int, level float64) (c int, tail float64) {
	alpha := 1 - level
	c = 1
	if n*m <= exactLimit {
		counts := uCounts(n, m)
		total := 0.0
		for _, x := range counts {
			total += x
		}
		// P(the shift is below the c-th smallest difference) = P(U <= c-1).
		tail = counts[0] / total
		cum := 0.0
		for u := 0; u < len(counts); u++ {
			cum += counts[u] / total
			if cum > alpha/2 {
				break
			}
			c, tail = u+1, cum
		}
	} else {
		// Normal approximation of U's quantile.
		z := distuv.UnitNormal.Quantile(1 - alpha/2)
		nm := float64(n * m)
		k := math.Floor(nm/2 - z*math.Sqrt(nm*float64(n+m+1)/12))
		c = max(1, int(k))
		tail = alpha / 2
	}
	return c, tail
}

// RatioInterval is ShiftInterval on logarithms, exponentiated: how many
// times larger b is than a, with its interval. Values must be positive;
// otherwise the interval is NaN.
func RatioInterval(a, b []float64, level float64) Interval {
	la, lb := make([]float64, len(a)), make([]float64, len(b))
	for i, x := range a {
		if x <= 0 {
			return Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN(), N: min(len(a), len(b))}
		}
		la[i] = math.Log(x)
	}
	for i, x := range b {
		if x <= 0 {
			return Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN(), N: min(len(a), len(b))}
		}
		lb[i] = math.Log(x)
	}
	s := ShiftInterval(la, lb, level)
	return Interval{Value: math.Exp(s.Value), Low: math.Exp(s.Low), High: math.Exp(s.High), Level: s.Level, N: s.N}
}

// BinomialP is the exact two-sided p-value of k successes in n draws at
// probability p: the probability of an outcome no more likely than k.
func BinomialP(k, n int, p float64) float64 {
	d := distuv.Binomial{N: float64(n), P: p}
	pk := d.Prob(float64(k))
	total := 0.0
	for i := 0; i <= n; i++ {
		if q := d.Prob(float64(i)); q <= pk*(1+1e-7) {
			total += q
		}
	}
	return math.Min(1, total)
}
