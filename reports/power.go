package reports

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// The gate's noise model: what a run's own trial-to-trial spread says
// about the interval a comparison will get. It sizes `--gate auto`'s
// limits, the change a rule can detect, and the trials a planned change
// needs (`meshbench gate plan`).
//
// A metric's trials are taken as lognormal around the run's value, with
// spread s, the standard deviation of their logarithms (close to the
// coefficient of variation for small spreads). The ratio candidate/base is
// estimated on logarithms by Hodges-Lehmann, whose variance for normal
// data is pi/3 times the difference of means' (its efficiency is 3/pi,
// 95.5%), so the standard error of the log-ratio for n base and m
// candidate trials is
//
//	se = s * sqrt(pi/3 * (1/n + 1/m)).
//
// A rule with limit L on an increase fails when the interval's low end
// lies above log L: with a true change D, the low end is about
// log D - q(level)*se, so the rule fails with probability `power` when
//
//	log D = log L + (q(level) + q(power)) * se,
//
// where q are quantiles of Student's t with n-1 degrees of freedom: the
// spread is estimated from the base's n trials alone, and the rank
// interval of few trials is wider than the normal one (simulated with the
// gate's own interval at 8 trials a side, TestNoiseModelMatchesTheGate:
// normal quantiles passed an unchanged candidate 93% of the time where
// the model said 99%; with t on n-1 degrees of freedom it passes 98.5%
// for AutoPass 99.5%).
//
// Only the base's spread is used: a regression that also makes the
// candidate noisier must not widen the limit it is judged by.

// DetectPower is the power at which detectable changes are stated.
const DetectPower = 0.80

// AutoPass is the probability with which an unchanged candidate's interval
// lies wholly within an auto limit: the limit is where the gate decides
// "no regression" that often when nothing changed.
const AutoPass = 0.995

// AutoFloor is the least relative change an auto limit allows: a change
// smaller than 1% is not one anybody gates on, however quiet the run.
const AutoFloor = 0.01

// MinPlanTrials is the fewest trials a side that give a rule a verdict:
// 4 against 4 is the smallest rank interval at MinGateLevel.
const MinPlanTrials = 4

// Noise is a metric's trial-to-trial spread in one run.
type Noise struct {
	Trials int `json:"trials"`
	// Spread is the standard deviation of the logarithms of the trials'
	// values (about the coefficient of variation).
	Spread float64 `json:"spread"`
}

// NoiseOf measures the spread of values; false when there are fewer than
// two, or a value is not positive (no logarithm).
func NoiseOf(values []float64) (Noise, bool) {
	if len(values) < 2 {
		return Noise{}, false
	}
	logs := make([]float64, len(values))
	for i, v := range values {
		if !(v > 0) || math.IsInf(v, 0) {
			return Noise{}, false
		}
		logs[i] = math.Log(v)
	}
	return Noise{Trials: len(values), Spread: stat.StdDev(logs, nil)}, true
}

// SE is the standard error of the log-ratio estimate for n base and m
// candidate trials.
func (n Noise) SE(base, cand int) float64 {
	if base < 1 || cand < 1 {
		return math.Inf(1)
	}
	return n.Spread * math.Sqrt(math.Pi/3*(1/float64(base)+1/float64(cand)))
}

// errorModel is the standard error of a comparison's log-ratio and the
// degrees of freedom of the spread it was estimated from: a base run's
// trials (Noise.model) or a history of runs (RunNoise.model).
type errorModel struct {
	se float64
	df int
	// about says where the spread came from, for verdicts.
	about string
}

func (n Noise) model(base, cand int) errorModel {
	return errorModel{se: n.SE(base, cand), df: base - 1, about: fmt.Sprintf("base spread %.1f%%", n.Spread*100)}
}

// quantiles are a model's quantiles of Student's t: of the interval
// (two-sided, at level), of AutoPass and of power.
type quantiles struct{ level, pass, power float64 }

func (e errorModel) quantiles(level, power float64) quantiles {
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(max(1, e.df))}
	return quantiles{level: t.Quantile((1 + level) / 2), pass: t.Quantile(AutoPass), power: t.Quantile(power)}
}

// autoLimit is the change within which an unchanged candidate's whole
// interval falls with probability AutoPass, and at least AutoFloor.
func (e errorModel) autoLimit(level float64, increase bool) float64 {
	q := e.quantiles(level, DetectPower)
	d := math.Max((q.level+q.pass)*e.se, math.Log1p(AutoFloor))
	if increase {
		return math.Exp(d)
	}
	return math.Exp(-d)
}

// detectable is the change beyond limit by (q(level) + q(power))
// standard errors: the least a rule fails on with probability power.
func (e errorModel) detectable(limit, level, power float64, increase bool) float64 {
	q := e.quantiles(level, power)
	d := (q.level + q.power) * e.se
	if increase {
		return limit * math.Exp(d)
	}
	return limit / math.Exp(d)
}

// AutoLimit is the ratio limit `auto` gives a rule for base and cand
// trials with noise n: the change within which an unchanged candidate's
// whole interval falls with probability AutoPass, and at least
// AutoFloor. increase says which way the rule fails (above the limit for
// latency and CPU, below for throughput).
func AutoLimit(n Noise, base, cand int, level float64, increase bool) float64 {
	return n.model(base, cand).autoLimit(level, increase)
}

// Detectable is the smallest change (as a ratio) that a rule with limit
// fails on with probability power, for base and cand trials with noise n
// and the interval level: a change beyond the limit by (q(level) +
// q(power)) standard errors.
func Detectable(limit float64, n Noise, base, cand int, level, power float64, increase bool) float64 {
	return n.model(base, cand).detectable(limit, level, power, increase)
}

// MaxPlanTrials bounds TrialsFor's search.
const MaxPlanTrials = 1 << 20

// RankLevel is the confidence the gate's rank interval reaches for base
// and cand trials when DefaultLevel is asked for (97.1% for 4 a side,
// 95.0% for 8): what compare's limits and verdicts use.
func RankLevel(base, cand int) float64 {
	if base < 1 || cand < 1 {
		return DefaultLevel
	}
	_, tail := rankCut(base, cand, DefaultLevel)
	return 1 - 2*tail
}

// TrialsFor is the least number of trials a side with which a rule
// detects the change (a ratio) with probability power, given noise: with
// a fixed limit (auto false), or with the auto limit those trials would
// give, at the interval level those trials reach (RankLevel). It is at
// least MinPlanTrials; false when no number of trials can (a change within
// a fixed limit, or not beyond the auto floor).
func TrialsFor(n Noise, change, limit float64, auto bool, power float64, increase bool) (int, bool) {
	detects := func(k int) bool {
		level := RankLevel(k, k)
		l := limit
		if auto {
			l = AutoLimit(n, k, k, level, increase)
		}
		d := Detectable(l, n, k, k, level, power, increase)
		if increase {
			return d <= change
		}
		return d >= change
	}
	// Detectable shrinks towards the limit (or the auto floor) as trials
	// grow: double, then bisect.
	hi := MinPlanTrials
	for !detects(hi) {
		if hi >= MaxPlanTrials {
			return 0, false
		}
		hi *= 2
	}
	lo := hi / 2 // detects(lo) is false, or lo < MinPlanTrials
	if hi == MinPlanTrials {
		return hi, true
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if detects(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, true
}

// floorText is AutoFloor as the signed change a rule fails beyond.
func floorText(increase bool) string {
	if increase {
		return fmt.Sprintf("%+.0f%%", AutoFloor*100)
	}
	return fmt.Sprintf("%+.0f%%", -AutoFloor*100)
}

// changeText prints a ratio as a signed percentage.
func changeText(ratio float64) string {
	if math.IsInf(ratio, 0) || math.IsNaN(ratio) {
		return "none"
	}
	return fmt.Sprintf("%+.1f%%", (ratio-1)*100)
}
