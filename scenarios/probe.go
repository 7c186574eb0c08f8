package scenarios

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Probe is a steady-state hypothesis of a game day, with Litmus's modes:
// what "healthy" means. successRate and latency are judged on the load
// client's seconds (no traffic of their own); http, prometheus and command
// probes act once a second through the window, and a second holds when
// every one of their readings in it did.
type Probe struct {
	Name string `yaml:"name" json:"name" mb:"required"`
	// Type is successRate (the percent of a second's requests that
	// succeed is at least Min), latency (the second's Percentile is at
	// most Max), http, prometheus or command.
	Type string `yaml:"type" json:"type" mb:"required"`
	// Mode is when it is judged: start-of-test (the seconds before the
	// first fault), end-of-test (the seconds after the last fault ends),
	// continuous (every second) or on-chaos (the seconds a fault is in
	// force).
	Mode       string   `yaml:"mode" json:"mode"`
	Min        float64  `yaml:"min" json:"min,omitempty"`
	Percentile float64  `yaml:"percentile" json:"percentile,omitempty"`
	Max        Duration `yaml:"max" json:"max,omitempty"`

	// http: Method (default GET) of Path sent once a second by a process
	// on the client's node, enrolled as the load client is (through its
	// node's proxy or its library) to the service the load calls; holds
	// when the answer's status is Status (default 200) within Timeout.
	Path   string `yaml:"path" json:"path,omitempty"`
	Method string `yaml:"method" json:"method,omitempty"`
	Status int    `yaml:"status" json:"status,omitempty"`
	// prometheus: the samples of Metric whose labels include Labels,
	// summed over the row's proxies' Prometheus metrics, read once a
	// second; with Rate, their increase per second. Holds when the value
	// meets Comparator.
	Metric string            `yaml:"metric" json:"metric,omitempty"`
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
	Rate   bool              `yaml:"rate" json:"rate,omitempty"`
	// command: Command (a program and its arguments, no shell) run on
	// meshbench's host once a second; holds when it exits 0 within
	// Timeout and, with a Comparator, its trimmed standard output meets it. It
	// sees MESHBENCH_MESH, MESHBENCH_MODE and MESHBENCH_SECOND.
	Command []string `yaml:"command" json:"command,omitempty"`
	// Comparator judges a prometheus probe's value or a command's output,
	// as Litmus's does.
	Comparator *Comparator `yaml:"comparator" json:"comparator,omitempty"`
	// Timeout bounds an http probe's request or a command (default and
	// most: 800ms, within the second).
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Mesh, when set, judges only that mesh's rows (the others: not
	// applicable): a probe of one mesh's own metrics.
	Mesh string `yaml:"mesh" json:"mesh,omitempty"`

	// Tolerance is the percent of judged seconds that may fail with the
	// probe still passing (default 0).
	Tolerance float64 `yaml:"tolerance" json:"tolerance,omitempty"`
	// Weight counts the probe in the resilience score (default 1).
	Weight float64 `yaml:"weight" json:"weight,omitempty"`
}

// Comparator compares a reading with Value: numerically with ==, !=, <,
// <=, >, >=; as text with contains or matches (a regular expression).
type Comparator struct {
	Criteria string `yaml:"criteria" json:"criteria" mb:"required"`
	Value    string `yaml:"value" json:"value" mb:"required"`
}

// Probe types and modes.
const (
	ProbeSuccessRate = "successRate"
	ProbeLatency     = "latency"
	ProbeHTTP        = "http"
	ProbePrometheus  = "prometheus"
	ProbeCommand     = "command"
	ProbeStart       = "start-of-test"
	ProbeEnd         = "end-of-test"
	ProbeContinuous  = "continuous"
	ProbeOnChaos     = "on-chaos"
)

// Active says the probe acts (sends, reads or runs something) once a
// second rather than reading the load client's seconds.
func (p Probe) Active() bool {
	return p.Type == ProbeHTTP || p.Type == ProbePrometheus || p.Type == ProbeCommand
}

// ProbeInterval is how often an active probe acts.
const ProbeInterval = time.Second

// MaxProbeTimeout bounds an active probe's reading (its default timeout):
// a reading a second, with time to spare before the next is due.
const MaxProbeTimeout = 800 * time.Millisecond

var (
	probeTypes    = []string{ProbeSuccessRate, ProbeLatency, ProbeHTTP, ProbePrometheus, ProbeCommand}
	probeModes    = []string{ProbeStart, ProbeEnd, ProbeContinuous, ProbeOnChaos}
	numericCriter = []string{"==", "!=", "<", "<=", ">", ">="}
	textCriteria  = []string{"contains", "matches"}
	metricNameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Compare says whether a reading (a number's text, or a command's output)
// meets the comparator; the error says why it cannot be compared.
func (c Comparator) Compare(reading string) (bool, error) {
	switch c.Criteria {
	case "contains":
		return strings.Contains(reading, c.Value), nil
	case "matches":
		re, err := regexp.Compile(c.Value)
		if err != nil {
			return false, err
		}
		return re.MatchString(reading), nil
	}
	want, err := strconv.ParseFloat(c.Value, 64)
	if err != nil {
		return false, fmt.Errorf("value %q is not a number", c.Value)
	}
	got, err := strconv.ParseFloat(strings.TrimSpace(reading), 64)
	if err != nil {
		return false, fmt.Errorf("reading %q is not a number", reading)
	}
	switch c.Criteria {
	case "==":
		return got == want, nil
	case "!=":
		return got != want, nil
	case "<":
		return got < want, nil
	case "<=":
		return got <= want, nil
	case ">":
		return got > want, nil
	case ">=":
		return got >= want, nil
	}
	return false, fmt.Errorf("unknown criteria %q", c.Criteria)
}

// normalizeProbes fills the probes' defaults.
func (s *Scenario) normalizeProbes() {
	for i := range s.Probes {
		p := &s.Probes[i]
		if p.Mode == "" {
			p.Mode = ProbeContinuous
		}
		if p.Weight == 0 {
			p.Weight = 1
		}
		if p.Type == ProbeHTTP {
			if p.Method == "" {
				p.Method = "GET"
			}
			if p.Path == "" {
				p.Path = "/"
			}
			if p.Status == 0 {
				p.Status = 200
			}
		}
		if (p.Type == ProbeHTTP || p.Type == ProbeCommand) && p.Timeout == 0 {
			p.Timeout = Duration(MaxProbeTimeout)
		}
	}
}

// validateProbes checks the probes: names, types with their bounds,
// modes, and that they judge a window with faults.
func (s *Scenario) validateProbes(add addFunc) {
	if len(s.Probes) > 0 && len(s.Faults) == 0 {
		add("probes", "probes judge a game day: the scenario has no faults")
	}
	seen := map[string]bool{}
	for i, p := range s.Probes {
		path := fmt.Sprintf("probes[%d]", i)
		if !nameRE.MatchString(p.Name) {
			add(path+".name", "%q is not a valid name: use 1-32 lowercase letters, digits and '-'", p.Name)
		} else if seen[p.Name] {
			add(path+".name", "a second probe named %q", p.Name)
		}
		seen[p.Name] = true
		if !slices.Contains(probeModes, p.Mode) {
			add(path+".mode", "unknown mode %q (%s)", p.Mode, strings.Join(probeModes, ", "))
		}
		if p.Tolerance < 0 || p.Tolerance >= 100 {
			add(path+".tolerance", "must be a percent of seconds from 0 to below 100, got %g", p.Tolerance)
		}
		if p.Weight <= 0 {
			add(path+".weight", "must be greater than 0, got %g", p.Weight)
		}
		if p.Mesh != "" && !slices.ContainsFunc(s.Meshes, func(m MeshRef) bool { return m.Row() == p.Mesh }) {
			add(path+".mesh", "%q is not one of the scenario's meshes", p.Mesh)
		}
		if !slices.Contains(probeTypes, p.Type) {
			add(path+".type", "unknown probe type %q (%s)", p.Type, strings.Join(probeTypes, ", "))
			continue
		}
		s.onlyFor(add, path, p.Type)
		switch p.Type {
		case ProbeSuccessRate:
			if p.Min <= 0 || p.Min > 100 {
				add(path+".min", "the least percent of a second's requests that succeed: more than 0, at most 100, got %g", p.Min)
			}
		case ProbeLatency:
			if p.Percentile != 50 && p.Percentile != 99 {
				add(path+".percentile", "50 or 99 (the percentiles kept second by second), got %g", p.Percentile)
			}
			if p.Max <= 0 {
				add(path+".max", "missing: the most the percentile may be (e.g. 50ms)")
			}
		case ProbeHTTP:
			if s.Load.Protocol != ProtocolHTTP {
				add(path+".type", "an http probe sends HTTP/1.1 beside the load: it needs load.protocol http, got %s", s.Load.Protocol)
			}
			if !strings.HasPrefix(p.Path, "/") {
				add(path+".path", "must start with '/', got %q", p.Path)
			}
			if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}, p.Method) {
				add(path+".method", "unknown method %q", p.Method)
			}
			if p.Status < 200 || p.Status > 599 {
				// 1xx are interim: a client reads past them.
				add(path+".status", "a final HTTP status from 200 to 599, got %d", p.Status)
			}
		case ProbePrometheus:
			if !metricNameRE.MatchString(p.Metric) {
				add(path+".metric", "%q is not a Prometheus metric name", p.Metric)
			}
			for _, l := range slices.Sorted(maps.Keys(p.Labels)) {
				if !labelNameRE.MatchString(l) {
					add(path+".labels", "%q is not a Prometheus label name", l)
				}
			}
			if p.Comparator == nil {
				add(path+".comparator", "missing: what the value must meet (e.g. criteria: \"<=\", value: \"5\")")
			} else if !slices.Contains(numericCriter, p.Comparator.Criteria) {
				add(path+".comparator.criteria", "a metric's value compares as a number: one of %s, got %q", strings.Join(numericCriter, " "), p.Comparator.Criteria)
				continue // the comparator's other checks would repeat it
			}
		case ProbeCommand:
			if len(p.Command) == 0 || p.Command[0] == "" {
				// Whether this host can run it is the runner's to say.
				add(path+".command", "missing: the program to run and its arguments")
			}
		}
		if c := p.Comparator; c != nil && (p.Type == ProbePrometheus || p.Type == ProbeCommand) {
			switch {
			case slices.Contains(numericCriter, c.Criteria):
				if _, err := strconv.ParseFloat(c.Value, 64); err != nil {
					add(path+".comparator.value", "%q is not a number (criteria %s compares numbers)", c.Value, c.Criteria)
				}
			case c.Criteria == "matches":
				if _, err := regexp.Compile(c.Value); err != nil {
					add(path+".comparator.value", "not a regular expression: %v", err)
				}
			case c.Criteria != "contains":
				add(path+".comparator.criteria", "unknown criteria %q (%s, %s)", c.Criteria, strings.Join(numericCriter, " "), strings.Join(textCriteria, ", "))
			}
		}
		if p.Active() && p.Type != ProbePrometheus && (p.Timeout <= 0 || p.Timeout.D() > MaxProbeTimeout) {
			add(path+".timeout", "more than 0 and at most %s (the probe acts once a second), got %s", MaxProbeTimeout, p.Timeout)
		}
	}
}

// probeFields are the fields that belong to some probe types only.
var probeFields = map[string][]string{
	"min":        {ProbeSuccessRate},
	"percentile": {ProbeLatency},
	"max":        {ProbeLatency},
	"path":       {ProbeHTTP},
	"method":     {ProbeHTTP},
	"status":     {ProbeHTTP},
	"metric":     {ProbePrometheus},
	"labels":     {ProbePrometheus},
	"rate":       {ProbePrometheus},
	"command":    {ProbeCommand},
	"comparator": {ProbePrometheus, ProbeCommand},
	"timeout":    {ProbeHTTP, ProbeCommand},
}

// onlyFor refuses a field set on a probe whose type has no use for it.
func (s *Scenario) onlyFor(add addFunc, path, typ string) {
	for _, f := range slices.Sorted(maps.Keys(probeFields)) {
		if types := probeFields[f]; !slices.Contains(types, typ) && s.setUnder(path+"."+f) {
			add(path+"."+f, "only for a %s probe, not %s", strings.Join(types, " or "), typ)
		}
	}
}
