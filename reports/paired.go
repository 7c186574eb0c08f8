package reports

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/meshbench/meshbench/runner/results"
)

// Two builds of a proxy measured in one run (meshbench run
// --candidate-binary) are two rows, MESH/MODE and MESH-candidate/MODE,
// whose trials ran side by side: trial i of both saw the same minute of
// the machine. Comparing them paired, on each trial's ratio, cancels what
// the trials share (drift over the run) instead of counting it as noise.

// CandidateSuffix marks a candidate build's rows: meshbench-candidate is
// the candidate of meshbench.
const CandidateSuffix = "-candidate"

// ComparePaired compares, within one run, every candidate row with its
// base row of the same mode and rate, pairing their trials by number: the
// ratio is the Hodges-Lehmann estimate of the trials' log-ratios (the
// median of their Walsh averages) with the Wilcoxon signed-rank interval,
// and the error model of rules is the spread of those log-ratios. Rows
// with no candidate twin are left out; false when there is none.
func ComparePaired(name string, trials []*results.Trial, rules []Rule, seed uint64) (*Comparison, bool) {
	base, cand := SplitCandidate(trials)
	var baselines []*results.Trial
	for _, t := range base {
		if t.Mode == BaselineMode {
			baselines = append(baselines, t)
		}
	}
	// The candidate's rows are grouped with the run's baseline trials, so
	// that metrics against the baseline (added latency) apply to them too.
	twins := map[string]*Group{}
	for _, g := range GroupTrials(append(slices.Clone(baselines), cand...)) {
		if g.Mode != BaselineMode {
			twins[g.Key()] = g
		}
	}
	var sides []baseSide
	paired := map[string]bool{}
	for _, g := range GroupTrials(base) {
		if twin := twins[g.Key()]; twin != nil {
			sides = append(sides, pairedBase{g: g, cand: twin})
			paired[g.Key()] = true
		}
	}
	// A max search's probes are candidate rows too: compare says that
	// they are not compared, as for two runs.
	if len(sides) == 0 && !slices.ContainsFunc(cand, func(t *results.Trial) bool { return t.Probe != nil }) {
		return nil, false
	}
	// Only the twins of base rows: a candidate row without one has
	// nothing to be paired with.
	var keep []*results.Trial
	for _, t := range append(baselines, cand...) {
		if paired[t.RateKey()] || t.Mode == BaselineMode {
			keep = append(keep, t)
		}
	}
	c := &Comparison{Base: name, Candidate: name + " (" + CandidateSuffix[1:] + " rows)", Gate: rules, Level: DefaultLevel, Seed: seed, Outcome: Pass, Paired: true}
	c.compare(sides, keep)
	return c, true
}

// SplitCandidate separates a run's candidate rows from the rest, the
// candidate's trials copied under their base row's mesh name so that
// they match it by key.
func SplitCandidate(trials []*results.Trial) (base, cand []*results.Trial) {
	for _, t := range trials {
		if mesh, ok := strings.CutSuffix(t.Mesh, CandidateSuffix); ok {
			c := *t
			c.Mesh = mesh
			cand = append(cand, &c)
		} else {
			base = append(base, t)
		}
	}
	return base, cand
}

// pairedBase is a base row whose candidate ran in the same trials.
type pairedBase struct{ g, cand *Group }

func (p pairedBase) group() *Group             { return p.g }
func (p pairedBase) sizes() (int, int)         { return len(p.g.Trials), 0 }
func (p pairedBase) values(m Metric) []float64 { return p.g.Values(m) }

func (p pairedBase) change(m Metric, bv, cv []float64, _ int, rng *rand.Rand) (Change, errorModel, bool) {
	ch := Change{Metric: m.Name, Unit: m.Unit,
		Base:      BootstrapMedian(bv, DefaultLevel, DefaultResamples, rng),
		Candidate: BootstrapMedian(cv, DefaultLevel, DefaultResamples, rng)}
	d, ok := p.logRatios(m)
	if !ok {
		ch.Ratio, ch.P = Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN()}, PValue(math.NaN())
		ch.why = fmt.Sprintf("%s has values at or below zero: no ratio", m.Name)
		return ch, errorModel{}, false
	}
	var pv float64
	ch.Ratio, pv = PairedRatio(d, DefaultLevel)
	ch.P = PValue(pv)
	if len(d) < 2 {
		ch.why = fmt.Sprintf("%s: %d trials measured it in both rows; pairing needs 2 or more", m.Name, len(d))
		return ch, errorModel{}, false
	}
	// A spread of zero (every trial's ratio the same) is a model too: the
	// interval is that one ratio. The spread is bounded by what the base
	// row alone would give (two rows as noisy as it, unpaired): a
	// candidate that is also noisier must not widen its own limit.
	sd := stat.StdDev(d, nil)
	if n, ok := NoiseOf(bv); ok {
		sd = math.Min(sd, math.Sqrt2*n.Spread)
	}
	return ch, errorModel{se: sd * math.Sqrt(math.Pi/3/float64(len(d))), df: len(d) - 1,
		about: fmt.Sprintf("paired spread %.1f%% over %d pairs", sd*100, len(d))}, true
}

// logRatios are log(candidate/base) of the metric for every trial number
// both rows measured it in; false when a value is not positive.
func (p pairedBase) logRatios(m Metric) ([]float64, bool) {
	byTrial := map[int]float64{}
	for _, t := range p.g.Trials {
		if v, ok := m.Value(t, p.g.Baseline[t.Trial]); ok {
			if !(v > 0) {
				return nil, false
			}
			byTrial[t.Trial] = v
		}
	}
	var d []float64
	for _, t := range p.cand.Trials {
		v, has := m.Value(t, p.cand.Baseline[t.Trial])
		if !has {
			continue
		}
		if !(v > 0) {
			return nil, false
		}
		if b, ok := byTrial[t.Trial]; ok {
			d = append(d, math.Log(v/b))
		}
	}
	return d, true
}

// PairedRatio is the ratio whose logarithms are d (log-ratios of paired
// trials): the Hodges-Lehmann estimate (the median of the Walsh averages
// (d_i+d_j)/2, i <= j) with the distribution-free interval that inverts
// the Wilcoxon signed-rank test, at the confidence the count allows (its
// Level: 87.5% for 4 pairs, 96.1% for 8), and the test's two-sided
// p-value (exact, ties included, up to signedRankExact pairs; else the
// normal approximation).
func PairedRatio(d []float64, level float64) (Interval, float64) {
	n := len(d)
	out := Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN(), N: n}
	if n == 0 {
		return out, math.NaN()
	}
	var walsh []float64
	for i := range d {
		for j := i; j < n; j++ {
			walsh = append(walsh, (d[i]+d[j])/2)
		}
	}
	slices.Sort(walsh)
	N := len(walsh)
	c, tail := signedRankCut(n, level)
	c = min(c, (N+1)/2)
	out.Value = math.Exp(median(walsh))
	out.Low, out.High = math.Exp(walsh[c-1]), math.Exp(walsh[N-c])
	out.Level = 1 - 2*tail
	return out, signedRankP(d)
}

// signedRankCounts are, for n pairs, the number of sign patterns giving
// each value 0..n(n+1)/2 of the signed-rank statistic T+.
func signedRankCounts(n int) []float64 {
	counts := make([]float64, n*(n+1)/2+1)
	counts[0] = 1
	for k := 1; k <= n; k++ {
		for s := len(counts) - 1; s >= k; s-- {
			counts[s] += counts[s-k]
		}
	}
	return counts
}

// signedRankExact bounds n for the exact distribution.
const signedRankExact = 60

// signedRankCut is where the signed-rank interval of n pairs at level is
// cut: the c-th smallest and largest Walsh averages, and the tail
// probability P(T+ <= c-1) each end leaves out (c = 1, the full range,
// when even P(T+ = 0) is larger than (1-level)/2).
func signedRankCut(n int, level float64) (int, float64) {
	alpha := 1 - level
	if n > signedRankExact {
		z := distuv.UnitNormal.Quantile(1 - alpha/2)
		nn := float64(n)
		k := math.Floor(nn*(nn+1)/4 - z*math.Sqrt(nn*(nn+1)*(2*nn+1)/24))
		return max(1, int(k)), alpha / 2
	}
	counts := signedRankCounts(n)
	total := math.Ldexp(1, n)
	c, tail, cum := 1, counts[0]/total, 0.0
	for t := range counts {
		cum += counts[t] / total
		if cum > alpha/2 {
			break
		}
		c, tail = t+1, cum
	}
	return c, tail
}

// signedRankP is the Wilcoxon signed-rank test's two-sided p-value for
// d's median being zero (zeros dropped).
func signedRankP(d []float64) float64 {
	var nz []float64
	for _, x := range d {
		if x != 0 {
			nz = append(nz, x)
		}
	}
	n := len(nz)
	if n == 0 {
		return 1
	}
	slices.SortFunc(nz, func(a, b float64) int {
		switch {
		case math.Abs(a) < math.Abs(b):
			return -1
		case math.Abs(a) > math.Abs(b):
			return 1
		}
		return 0
	})
	// Ranks of |d|, ties sharing their mean rank; doubled, so that
	// they are whole numbers either way.
	ranks2 := make([]int, n)
	tPlus2, tieTerm := 0, 0.0
	for i := 0; i < n; {
		j := i
		for j < n && math.Abs(nz[j]) == math.Abs(nz[i]) {
			j++
		}
		if j-i > 1 {
			t := float64(j - i)
			tieTerm += t*t*t - t
		}
		for k := i; k < j; k++ {
			ranks2[k] = i + j + 1
			if nz[k] > 0 {
				tPlus2 += i + j + 1
			}
		}
		i = j
	}
	if n <= signedRankExact {
		// Exact, ties included: under no change each rank's sign is
		// + or - alike, so T+ is distributed as the sums of the subsets
		// of the (mid)ranks, counted here; the distribution is
		// symmetric about its mean.
		total := n * (n + 1)
		counts := make([]float64, total+1)
		counts[0] = 1
		for _, r := range ranks2 {
			for s := total; s >= r; s-- {
				counts[s] += counts[s-r]
			}
		}
		lo := min(tPlus2, total-tPlus2)
		tail := 0.0
		for t := 0; t <= lo; t++ {
			tail += counts[t]
		}
		return math.Min(1, 2*tail/math.Ldexp(1, n))
	}
	nn, tPlus := float64(n), float64(tPlus2)/2
	mean := nn * (nn + 1) / 4
	variance := nn*(nn+1)*(2*nn+1)/24 - tieTerm/48
	if variance <= 0 {
		return 1
	}
	z := math.Max(0, math.Abs(tPlus-mean)-0.5) / math.Sqrt(variance)
	return math.Min(1, 2*distuv.UnitNormal.Survival(z))
}
