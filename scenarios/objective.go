package scenarios

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Objective is a service-level objective a report checks against a run,
// written in a scenario's `slos` list as
//
//	METRIC OP VALUE [at RATE rps] [for MESH/MODE | for MODE]
//
// e.g. "p99 < 2ms at 1000 rps", "errors == 0", "added-p99 <= 1ms for
// sidecar". Each becomes a test case of the JUnit report for every
// (mesh, mode, rate) it applies to, judged on the median over trials
// (errors: the total).
type Objective struct {
	Text   string
	Metric string
	Op     string
	// Value is in the metric's unit: milliseconds for latencies, a ratio
	// for error-rate, requests for errors, requests per second for qps,
	// millicores for cpu, MiB (printed "MB") for mem.
	Value float64
	// Rate, when set, limits the objective to that requested rate.
	Rate float64
	// Mesh and Mode, when set, limit it to that mesh and/or mode.
	Mesh, Mode string
}

// objectiveUnits maps each metric an objective may name to its kind of
// value.
var objectiveUnits = map[string]string{
	"p50": "duration", "p90": "duration", "p99": "duration", "p99.9": "duration", "co-p99": "duration",
	"added-p50": "duration", "added-p99": "duration",
	"qps": "number", "errors": "count", "error-rate": "ratio", "cpu": "millicores", "mem": "megabytes",
}

// ObjectiveMetrics lists the metrics objectives may name.
func ObjectiveMetrics() []string {
	return []string{"p50", "p90", "p99", "p99.9", "co-p99", "added-p50", "added-p99", "qps", "errors", "error-rate", "cpu", "mem"}
}

// ParseObjective reads one objective.
func ParseObjective(text string) (Objective, error) {
	o := Objective{Text: text}
	f := strings.Fields(text)
	if len(f) < 3 {
		return o, fmt.Errorf("%q: want METRIC OP VALUE [at RATE rps] [for MESH/MODE], e.g. \"p99 < 2ms at 1000 rps\"", text)
	}
	o.Metric, o.Op = strings.ToLower(f[0]), f[1]
	unit, ok := objectiveUnits[o.Metric]
	if !ok {
		return o, fmt.Errorf("%q: unknown metric %q (known: %s)", text, f[0], strings.Join(ObjectiveMetrics(), ", "))
	}
	switch o.Op {
	case "<", "<=", ">", ">=", "==":
	default:
		return o, fmt.Errorf("%q: unknown comparison %q (use <, <=, >, >= or ==)", text, o.Op)
	}
	v, err := objectiveValue(unit, f[2])
	if err != nil {
		return o, fmt.Errorf("%q: %v", text, err)
	}
	o.Value = v
	rest := f[3:]
	for len(rest) > 0 {
		switch {
		case rest[0] == "at" && len(rest) >= 3 && rest[2] == "rps":
			r, err := strconv.ParseFloat(rest[1], 64)
			if err != nil || r <= 0 {
				return o, fmt.Errorf("%q: bad rate %q", text, rest[1])
			}
			o.Rate, rest = r, rest[3:]
		case rest[0] == "for" && len(rest) >= 2:
			if mesh, mode, ok := strings.Cut(rest[1], "/"); ok {
				o.Mesh, o.Mode = mesh, mode
			} else {
				o.Mode = rest[1]
			}
			if o.Mode != "" && !knownMode(Mode(o.Mode)) {
				return o, fmt.Errorf("%q: unknown mode %q (known: %s)", text, o.Mode, modeList())
			}
			rest = rest[2:]
		default:
			return o, fmt.Errorf("%q: unexpected %q (want \"at RATE rps\" or \"for MESH/MODE\")", text, strings.Join(rest, " "))
		}
	}
	return o, nil
}

func objectiveValue(unit, s string) (float64, error) {
	switch unit {
	case "duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 2ms or 500us", s)
		}
		return float64(d) / float64(time.Millisecond), nil
	case "ratio":
		pct := strings.HasSuffix(s, "%")
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a share such as 0.1%% or 0.001", s)
		}
		if pct {
			v /= 100
		}
		return v, nil
	case "millicores":
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "m"), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not CPU such as 250m (millicores)", s)
		}
		return v, nil
	case "megabytes":
		// Reports print memory in MiB (as "MB"): a plain number, MB and MiB
		// all mean that unit; GB and GiB are 1024 of it.
		mult := 1.0
		num := s
		for _, suf := range []struct {
			s string
			m float64
		}{{"MiB", 1}, {"MB", 1}, {"GiB", 1024}, {"GB", 1024}} {
			if strings.HasSuffix(s, suf.s) {
				num, mult = strings.TrimSuffix(s, suf.s), suf.m
				break
			}
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || !(v >= 0) {
			return 0, fmt.Errorf("%q is not memory such as 50MB", s)
		}
		return v * mult, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// Holds reports whether v meets the objective.
func (o Objective) Holds(v float64) bool {
	switch o.Op {
	case "<":
		return v < o.Value
	case "<=":
		return v <= o.Value
	case ">":
		return v > o.Value
	case ">=":
		return v >= o.Value
	}
	return v == o.Value
}

// Applies reports whether the objective covers a (mesh, mode, rate).
func (o Objective) Applies(mesh, mode string, rate float64) bool {
	return (o.Rate == 0 || o.Rate == rate) && (o.Mesh == "" || o.Mesh == mesh) && (o.Mode == "" || o.Mode == mode)
}
