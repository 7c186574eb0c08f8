package reports

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/meshbench/meshbench/runner/results"
)

// A history is a results index's published runs of one scenario, oldest
// first. Each (mesh, mode, rate) row and metric of it is a series of run
// values (the median over each run's trials), and a series has two levels
// of noise: trial to trial within a run, and run to run (a machine's state,
// the other tenants, the build), which no single pair of runs can see. A
// candidate is judged against the series by how far its value lies from
// the series' (CompareHistory), and a series is searched for the points
// where its level shifted (ChangePoints), as nightly benchmark jobs do
// (Apache Otava, Mozilla Perfherder).

// HistoryRun is one published run.
type HistoryRun struct {
	ID       string
	Start    time.Time
	Scenario string
	Trials   []*results.Trial
}

// HistoryBase describes the series a candidate was compared with.
type HistoryBase struct {
	Dir      string    `json:"dir"`
	Scenario string    `json:"scenario"`
	Window   int       `json:"window"`
	Runs     int       `json:"runs"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
}

// DefaultWindow is how many of the latest runs CompareHistory judges by.
const DefaultWindow = 20

// MinHistoryRuns is the fewest runs of a row whose run-to-run spread a
// verdict may rest on.
const MinHistoryRuns = 3

// RunNoise is a metric's spread over a series of runs.
type RunNoise struct {
	Runs int `json:"runs"`
	// Center is the mean of the logarithms of the runs' values.
	Center float64 `json:"center"`
	// Between is the standard deviation of the logarithms of the runs'
	// values: how much a run's value moves from run to run.
	Between float64 `json:"between"`
	// Within is the pooled standard deviation of the logarithms of the
	// trials inside each run; Trials the mean number of trials a run has.
	Within float64 `json:"within"`
	Trials float64 `json:"trials"`
}

// RunNoiseOf measures the spread of runs, each given as its trials'
// values; false when fewer than MinHistoryRuns runs have values or a
// value is not positive.
func RunNoiseOf(runs [][]float64) (RunNoise, bool) {
	var centers []float64
	var ss, df, trials float64
	for _, vs := range runs {
		if len(vs) == 0 {
			continue
		}
		logs := make([]float64, len(vs))
		for i, v := range vs {
			if !(v > 0) || math.IsInf(v, 0) {
				return RunNoise{}, false
			}
			logs[i] = math.Log(v)
		}
		centers = append(centers, math.Log(Median(vs)))
		trials += float64(len(vs))
		if len(logs) > 1 {
			ss += stat.Variance(logs, nil) * float64(len(logs)-1)
			df += float64(len(logs) - 1)
		}
	}
	if len(centers) < MinHistoryRuns {
		return RunNoise{}, false
	}
	n := RunNoise{Runs: len(centers), Center: stat.Mean(centers, nil), Between: stat.StdDev(centers, nil), Trials: trials / float64(len(centers))}
	if df > 0 {
		n.Within = math.Sqrt(ss / df)
	}
	return n, true
}

// medianVar is the variance of the median of k values of spread s: s²/k
// for one or two (the median is their mean), pi/2 times that beyond (the
// median's efficiency for normal data is 2/pi).
func medianVar(s, k float64) float64 {
	if k <= 0 {
		return math.Inf(1)
	}
	if k <= 2 {
		return s * s / k
	}
	return math.Pi / 2 * s * s / k
}

// Drift is the run-to-run spread beyond what the runs' own trial counts
// explain: the part of Between that more trials in a run would not shrink.
func (n RunNoise) Drift() float64 {
	return math.Sqrt(math.Max(0, n.Between*n.Between-medianVar(n.Within, n.Trials)))
}

// SE is the standard error of the log-ratio of a candidate run of cand
// trials to the series' center: the candidate's own run-to-run variance
// (drift, and its trials' spread for its trial count) plus the center's.
func (n RunNoise) SE(cand int) float64 {
	d := n.Drift()
	return math.Sqrt(d*d + medianVar(n.Within, float64(cand)) + n.Between*n.Between/float64(n.Runs))
}

func (n RunNoise) model(cand int) errorModel {
	return errorModel{se: n.SE(cand), df: n.Runs - 1,
		about: fmt.Sprintf("run-to-run spread %.1f%% over %d runs, %.1f%% within runs", n.Between*100, n.Runs, n.Within*100)}
}

// CompareHistory judges a candidate against the latest window runs of a
// history (one scenario's runs, oldest first): each row's ratio is the
// candidate's median over the geometric mean of the runs' values, with a t
// interval whose width is the series' run-to-run noise (RunNoise.SE): the
// range in which an unchanged candidate's run would fall. Rules apply as
// in Compare; an auto limit comes from the run-to-run spread.
func CompareHistory(h HistoryBase, runs []HistoryRun, candName string, cand []*results.Trial, rules []Rule, seed uint64) *Comparison {
	if h.Window > 0 && len(runs) > h.Window {
		runs = runs[len(runs)-h.Window:]
	}
	h.Runs = len(runs)
	if len(runs) > 0 {
		h.From, h.To = runs[0].Start.UTC(), runs[len(runs)-1].Start.UTC()
	}
	byKey := map[string]*seriesBase{}
	var sides []baseSide
	for _, r := range runs {
		for _, g := range GroupTrials(r.Trials) {
			s := byKey[g.Key()]
			if s == nil {
				s = &seriesBase{g: &Group{Mesh: g.Mesh, Mode: g.Mode, Rate: g.Rate}}
				byKey[g.Key()] = s
				sides = append(sides, s)
			}
			s.runs = append(s.runs, g)
		}
	}
	name := fmt.Sprintf("history %s: %d runs of %s", h.Dir, h.Runs, h.Scenario)
	if h.Runs > 0 {
		name += fmt.Sprintf(", %s to %s", h.From.Format("2006-01-02 15:04"), h.To.Format("2006-01-02 15:04"))
	}
	c := &Comparison{Base: name, Candidate: candName, Gate: rules, Level: DefaultLevel, Seed: seed, Outcome: Pass, History: &h}
	c.compare(sides, cand)
	return c
}

// seriesBase is a row's past runs as a base.
type seriesBase struct {
	g    *Group
	runs []*Group
}

func (s *seriesBase) group() *Group { return s.g }

func (s *seriesBase) sizes() (int, int) {
	n := 0
	for _, g := range s.runs {
		n += len(g.Trials)
	}
	return n, len(s.runs)
}

// values are the runs' values: the median of each run's trials.
func (s *seriesBase) values(m Metric) []float64 {
	var out []float64
	for _, g := range s.runs {
		if vs := g.Values(m); len(vs) > 0 {
			out = append(out, Median(vs))
		}
	}
	return out
}

func (s *seriesBase) change(m Metric, bv, cv []float64, _ int, rng *rand.Rand) (Change, errorModel, bool) {
	var perRun [][]float64
	for _, g := range s.runs {
		perRun = append(perRun, g.Values(m))
	}
	ch := Change{Metric: m.Name, Unit: m.Unit,
		Base:      BootstrapMedian(bv, DefaultLevel, DefaultResamples, rng),
		Candidate: BootstrapMedian(cv, DefaultLevel, DefaultResamples, rng)}
	var model errorModel
	var p float64
	ch.Ratio, p, model, ch.why = historyRatio(perRun, cv)
	ch.P = PValue(p)
	if ch.why != "" {
		ch.why = m.Name + ": " + ch.why
	}
	return ch, model, ch.why == ""
}

// historyRatio is the ratio of a candidate's values to a series of runs
// (each given as its trials' values): the candidate's median over the
// runs' geometric mean, with the t interval of RunNoise.SE and its
// two-sided p-value, and the error model rules judge it by; why says why
// there is none.
func historyRatio(runs [][]float64, cand []float64) (Interval, float64, errorModel, string) {
	nan := Interval{Value: math.NaN(), Low: math.NaN(), High: math.NaN()}
	withValues := 0
	for _, vs := range runs {
		if len(vs) > 0 {
			withValues++
		}
	}
	if withValues < MinHistoryRuns {
		return nan, math.NaN(), errorModel{}, fmt.Sprintf("the history has %d runs of this row; a verdict needs %d", withValues, MinHistoryRuns)
	}
	noise, ok := RunNoiseOf(runs)
	y := median(cand)
	if !ok || !(y > 0) {
		return nan, math.NaN(), errorModel{}, "values at or below zero: no ratio"
	}
	model := noise.model(len(cand))
	if !(model.se > 0) {
		return nan, math.NaN(), errorModel{}, "the history's values and the candidate's trials do not vary at all: no spread to judge a change by"
	}
	d := math.Log(y) - noise.Center
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(model.df)}
	q := t.Quantile((1 + DefaultLevel) / 2)
	iv := Interval{Value: math.Exp(d), Low: math.Exp(d - q*model.se), High: math.Exp(d + q*model.se), Level: DefaultLevel, N: noise.Runs}
	return iv, math.Min(1, 2*t.Survival(math.Abs(d)/model.se)), model, ""
}

// Series is one metric of one row of a scenario over the published runs.
type Series struct {
	Scenario string        `json:"scenario"`
	Key      string        `json:"key"`
	Mesh     string        `json:"mesh"`
	Mode     string        `json:"mode"`
	Rate     float64       `json:"requestedQPS"`
	Metric   string        `json:"metric"`
	Unit     string        `json:"unit"`
	Points   []SeriesPoint `json:"points"`
	Changes  []ChangePoint `json:"changes"`
}

// SeriesPoint is one run's value: the median over its trials.
type SeriesPoint struct {
	RunID  string    `json:"runId"`
	Start  time.Time `json:"start"`
	Value  float64   `json:"value"`
	Trials int       `json:"trials"`
}

// ChangePoint is where a series' level shifted: the first run of the new
// level, the levels before and after (geometric means of the segments
// between change points), and the permutation p-value of the split.
type ChangePoint struct {
	Index      int       `json:"index"`
	RunID      string    `json:"runId"`
	Start      time.Time `json:"start"`
	Before     float64   `json:"before"`
	After      float64   `json:"after"`
	Ratio      float64   `json:"ratio"`
	P          float64   `json:"p"`
	Regression bool      `json:"regression"`
}

// ChangeOptions tune the change-point search.
type ChangeOptions struct {
	// Alpha is the p-value below which a split is a change point.
	Alpha float64 `json:"alpha"`
	// MinSegment is the fewest runs a level must last to count.
	MinSegment int `json:"minSegment"`
	// Permutations bounds the permutation test of each split.
	Permutations int    `json:"permutations"`
	Seed         uint64 `json:"seed"`
}

// DefaultChangeOptions: a change must last 3 runs and be significant at
// 1% against 999 permutations.
var DefaultChangeOptions = ChangeOptions{Alpha: 0.01, MinSegment: 3, Permutations: 999, Seed: DefaultSeed}

// HistoryMetrics are the metrics `meshbench history` follows by default.
var HistoryMetrics = []string{"p50", "p99", "cpu"}

// HistorySeries builds every (scenario, row, metric) series of runs
// (oldest first) and finds its change points.
func HistorySeries(runs []HistoryRun, metrics []Metric, o ChangeOptions) []*Series {
	var out []*Series
	byKey := map[string]*Series{}
	for _, r := range runs {
		for _, g := range GroupTrials(r.Trials) {
			for _, m := range metrics {
				vs := g.Values(m)
				if len(vs) == 0 {
					continue
				}
				k := r.Scenario + "\x00" + g.Key() + "\x00" + m.Name
				s := byKey[k]
				if s == nil {
					s = &Series{Scenario: r.Scenario, Key: g.Key(), Mesh: g.Mesh, Mode: g.Mode, Rate: g.Rate, Metric: m.Name, Unit: m.Unit}
					byKey[k] = s
					out = append(out, s)
				}
				s.Points = append(s.Points, SeriesPoint{RunID: r.ID, Start: r.Start.UTC(), Value: Median(vs), Trials: len(vs)})
			}
		}
	}
	for _, s := range out {
		s.findChanges(o)
	}
	return out
}

// findChanges fills the series' change points.
func (s *Series) findChanges(o ChangeOptions) {
	logs := make([]float64, len(s.Points))
	for i, p := range s.Points {
		if !(p.Value > 0) {
			return // no logarithm: a series with zeros is not searched
		}
		logs[i] = math.Log(p.Value)
	}
	at, ps := ChangePoints(logs, o)
	m, _ := MetricByName(s.Metric)
	bounds := append(append([]int{0}, at...), len(logs))
	for i, idx := range at {
		before := math.Exp(stat.Mean(logs[bounds[i]:idx], nil))
		after := math.Exp(stat.Mean(logs[idx:bounds[i+2]], nil))
		s.Changes = append(s.Changes, ChangePoint{Index: idx, RunID: s.Points[idx].RunID, Start: s.Points[idx].Start,
			Before: before, After: after, Ratio: after / before, P: ps[i], Regression: (after > before) == m.HigherIsWorse})
	}
}

// ChangePoints finds where the mean of xs shifts, by binary segmentation
// in the manner of E-Divisive (as Apache Otava uses it): in a segment, the
// split that maximizes the two-sample t statistic between its two sides is
// a change point when a permutation test (shuffling the segment, seeded,
// taking the maximum over all splits each time, so that searching every
// split is accounted for) puts its p-value below Alpha; both sides are then
// searched again. Both sides of a split keep at least MinSegment points.
// It returns the indices where new segments start, ascending, with their
// p-values.
func ChangePoints(xs []float64, o ChangeOptions) ([]int, []float64) {
	if o.MinSegment < 2 {
		o.MinSegment = 2
	}
	if o.Permutations < 1 {
		o.Permutations = DefaultChangeOptions.Permutations
	}
	type found struct {
		at int
		p  float64
	}
	var all []found
	var search func(lo, hi int)
	search = func(lo, hi int) {
		seg := xs[lo:hi]
		tau, tObs := maxSplit(seg, o.MinSegment)
		if tau < 0 || tObs == 0 {
			return
		}
		rng := rand.New(rand.NewPCG(o.Seed, uint64(lo)<<32|uint64(hi)))
		perm := slices.Clone(seg)
		// Stop counting once the p-value cannot fall below Alpha.
		limit := int(math.Ceil(o.Alpha*float64(o.Permutations+1))) - 1
		exceed := 0
		for range o.Permutations {
			rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			// Within rounding of the observed statistic counts as reaching
			// it: a shuffle within each side gives the same t.
			if _, t := maxSplit(perm, o.MinSegment); t >= tObs*(1-1e-9) {
				if exceed++; exceed > limit {
					return
				}
			}
		}
		p := float64(exceed+1) / float64(o.Permutations+1)
		if p >= o.Alpha {
			return
		}
		all = append(all, found{lo + tau, p})
		search(lo, lo+tau)
		search(lo+tau, hi)
	}
	search(0, len(xs))
	slices.SortFunc(all, func(a, b found) int { return a.at - b.at })
	at, ps := make([]int, len(all)), make([]float64, len(all))
	for i, f := range all {
		at[i], ps[i] = f.at, f.p
	}
	return at, ps
}

// maxSplit is the split of xs (the first index of its second part, each
// part at least minSeg long) with the largest two-sample t statistic
// (pooled variance), and that statistic; -1 when xs is too short.
func maxSplit(xs []float64, minSeg int) (int, float64) {
	n := len(xs)
	if n < 2*minSeg {
		return -1, 0
	}
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	best, bestT := -1, -1.0
	var ls, lq float64
	for i := 0; i < n-minSeg; i++ {
		ls += xs[i]
		lq += xs[i] * xs[i]
		nl := float64(i + 1)
		if i+1 < minSeg {
			continue
		}
		nr := float64(n) - nl
		ml, mr := ls/nl, (sum-ls)/nr
		ssl := math.Max(0, lq-nl*ml*ml)
		ssr := math.Max(0, (sq-lq)-nr*mr*mr)
		pooled := (ssl + ssr) / float64(n-2)
		diff := math.Abs(ml - mr)
		var t float64
		switch {
		case pooled > 0:
			t = diff / math.Sqrt(pooled*(1/nl+1/nr))
		case diff > 0:
			t = math.Inf(1)
		}
		if t > bestT {
			best, bestT = i+1, t
		}
	}
	return best, bestT
}
