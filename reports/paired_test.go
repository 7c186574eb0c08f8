package reports

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/runner/results"
)

func TestSignedRank(t *testing.T) {
	if got := signedRankCounts(3); len(got) != 7 || got[0] != 1 || got[3] != 2 || got[6] != 1 {
		t.Errorf("signed-rank counts of 3 pairs: %v, want [1 1 1 2 1 1 1]", got)
	}
	for _, c := range []struct {
		n     int
		level float64
	}{{4, 0.875}, {5, 0.9375}, {6, 1 - 2.0/64}, {8, 1 - 2*5.0/256}} {
		iv, _ := PairedRatio(make([]float64, c.n), DefaultLevel)
		if math.Abs(iv.Level-c.level) > 1e-9 {
			t.Errorf("%d pairs: level %.4f, want %.4f", c.n, iv.Level, c.level)
		}
	}
	all := []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}
	if _, p := PairedRatio(all, DefaultLevel); math.Abs(p-2.0/256) > 1e-12 {
		t.Errorf("8 positive log-ratios: p %.5f, want 2/256", p)
	}
	// Ties: the exact p-value, as every one of the 2^n sign patterns of
	// the midranks gives it (small samples with ties were the normal
	// approximation's, which is off at 8 pairs).
	for _, d := range [][]float64{
		{0.1, -0.1, 0.2, 0.2, 0.3, -0.3, 0.3, 0.4},
		{0.05, 0.05, 0.05, -0.05, 0.1, 0.1, 0.2, -0.2},
		{0.3, 0.3, 0.3, 0.3, 0.3, 0.3},
	} {
		if got, want := signedRankP(d), bruteSignedRankP(d); math.Abs(got-want) > 1e-12 {
			t.Errorf("%v: p %.6f, want %.6f (every sign pattern)", d, got, want)
		}
	}
	// Coverage: with no change, the interval holds 1 as often as its
	// level says (seeded).
	rng := rand.New(rand.NewPCG(4, 4))
	const reps = 4000
	held := 0
	for range reps {
		d := make([]float64, 8)
		for i := range d {
			d[i] = 0.1 * rng.NormFloat64()
		}
		if iv, _ := PairedRatio(d, DefaultLevel); iv.Low <= 1 && 1 <= iv.High {
			held++
		}
	}
	if cover := float64(held) / reps; cover < 0.945 || cover > 0.975 {
		t.Errorf("8 pairs, no change: the interval held 1 in %.1f%% of draws, want about 96.1%%", cover*100)
	}
}

// pairedRun is one run of a base and a candidate row of 8 trials whose
// values share each trial's drift (20%) and differ by their own noise
// (2%), the candidate's p99 times change.
func pairedRun(seed uint64, change float64) []*results.Trial {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []*results.Trial
	for i := 1; i <= 8; i++ {
		drift := math.Exp(0.2 * rng.NormFloat64())
		for _, mesh := range []string{"meshbench", "meshbench" + CandidateSuffix} {
			f := drift * math.Exp(0.02*rng.NormFloat64())
			if mesh != "meshbench" {
				f *= change
			}
			tr := trial(mesh, "sidecar", i, 0.5*f, 2*f, 0)
			tr.Requested = 1000
			out = append(out, tr)
		}
	}
	return out
}

// Pairing cancels what a trial's two rows share: on runs whose drift from
// trial to trial is ten times the rows' own noise, the paired interval is
// a fraction of the unpaired one, and a 10% regression fails the gate
// paired while unpaired it cannot be told from the drift.
func TestComparePaired(t *testing.T) {
	rules, _ := ParseGate("p99:+5%")
	run := pairedRun(1, 1.10)
	c, ok := ComparePaired("run", run, rules, DefaultSeed)
	if !ok || len(c.Rows) != 1 || !c.Paired {
		t.Fatalf("ComparePaired: %v, %+v", ok, c)
	}
	base, cand := SplitCandidate(run)
	u := Compare("run", base, "run", cand, rules, DefaultSeed)
	pw, uw := width(t, c, "p99"), width(t, u, "p99")
	if pw > uw/3 {
		t.Errorf("paired p99 interval %.3f wide (log), unpaired %.3f: pairing should cancel the shared drift", pw, uw)
	}
	if got := verdict(t, c, "meshbench/sidecar@1000", "p99:+5%"); got != Fail {
		t.Errorf("paired, p99 +10%%: %s, want fail", got)
	}
	if got := verdict(t, u, "meshbench/sidecar@1000", "p99:+5%"); got == Fail {
		t.Errorf("unpaired, p99 +10%% under 20%% drift: %s; the unpaired interval should not be this narrow", got)
	}
	if _, ok := ComparePaired("run", base, rules, DefaultSeed); ok {
		t.Error("a run without candidate rows compared paired")
	}
	// A max search with a candidate: its rows are probes, not compared;
	// the gate decides nothing and says why.
	var probes []*results.Trial
	for i, tr := range run {
		p := *tr
		p.Probe = &results.Probe{Index: i + 1, Pass: true}
		probes = append(probes, &p)
	}
	c, ok = ComparePaired("run", probes, rules, DefaultSeed)
	if !ok || c.Outcome != Inconclusive || len(c.Rows) != 0 || !strings.Contains(c.Note, "max searches") {
		t.Errorf("ComparePaired of a max search: %v, %+v; want inconclusive, no rows, a note on max searches", ok, c)
	}
}

// width is the log width of a comparison's first row's interval of metric.
func width(t *testing.T, c *Comparison, metric string) float64 {
	t.Helper()
	for _, r := range c.Rows {
		if ch, ok := r.change(metric); ok {
			return math.Log(ch.Ratio.High / ch.Ratio.Low)
		}
	}
	t.Fatalf("no %s change", metric)
	return 0
}

// bruteSignedRankP is the signed-rank test's two-sided p-value by every
// sign pattern of d's midranks (d without zeros).
func bruteSignedRankP(d []float64) float64 {
	n := len(d)
	rank := make([]float64, n)
	for i, x := range d {
		less, same := 0, 0
		for _, y := range d {
			switch {
			case math.Abs(y) < math.Abs(x):
				less++
			case math.Abs(y) == math.Abs(x):
				same++
			}
		}
		rank[i] = float64(less) + float64(same+1)/2
	}
	var observed, total float64
	for i, x := range d {
		total += rank[i]
		if x > 0 {
			observed += rank[i]
		}
	}
	lo := math.Min(observed, total-observed)
	extreme := 0
	for mask := 0; mask < 1<<n; mask++ {
		t := 0.0
		for i := range n {
			if mask&(1<<i) != 0 {
				t += rank[i]
			}
		}
		if t <= lo+1e-9 || t >= total-lo-1e-9 {
			extreme++
		}
	}
	return math.Min(1, float64(extreme)/math.Ldexp(1, n))
}
