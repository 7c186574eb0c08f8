package scenarios

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Limits that keep every run bounded in time and load.
const (
	MaxQPS         = 100000
	MaxConnections = 1024
	MaxDuration    = Duration(time.Hour)
	MaxTrials      = 100
	MaxPayload     = ByteSize(64 << 20)
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Validate checks the scenario's values (after Normalize) and returns an
// ErrorList naming every problem, or nil.
func (s *Scenario) Validate() error {
	var errs ErrorList
	add := func(path, format string, args ...any) {
		errs = append(errs, s.FieldError(path, format, args...))
	}
	if s.APIVersion != APIVersion {
		add("apiVersion", "unsupported schema version %q (this meshbench reads %q)", s.APIVersion, APIVersion)
	}
	if !nameRE.MatchString(s.Name) {
		add("name", "%q is not a valid name: use 1-32 lowercase letters, digits and '-'", s.Name)
	}
	switch s.Platform {
	case "local":
	case "kind":
		add("platform", "the kind platform is not yet available; use \"local\"")
	default:
		add("platform", "unknown platform %q (known: local, kind)", s.Platform)
	}
	s.validateTopology(add)
	s.validateMeshes(add)
	s.validateLoad(add)
	if s.Order != OrderRotate && s.Order != OrderRandom {
		add("order", "unknown order %q (rotate, random)", s.Order)
	}
	if s.Trials < 1 || s.Trials > MaxTrials {
		add("trials", "must be between 1 and %d, got %d", MaxTrials, s.Trials)
	}
	return errs.err()
}

type addFunc func(path, format string, args ...any)

func (s *Scenario) validateTopology(add addFunc) {
	t := s.Topology
	for path, name := range map[string]string{"topology.client.name": t.Client.Name, "topology.server.name": t.Server.Name} {
		if !nameRE.MatchString(name) {
			add(path, "%q is not a valid workload name: use 1-32 lowercase letters, digits and '-'", name)
		}
	}
	if t.Client.Name == t.Server.Name {
		add("topology.server.name", "client and server must have different names, both are %q", t.Server.Name)
	}
	if t.Server.PayloadSize > MaxPayload {
		add("topology.server.payloadSize", "must be at most %s, got %s", MaxPayload, t.Server.PayloadSize)
	}
	if t.Server.ServiceTime < 0 || t.Server.ServiceTime > Duration(10*time.Second) {
		add("topology.server.serviceTime", "must be between 0 and 10s, got %s", t.Server.ServiceTime)
	}
}

func (s *Scenario) validateMeshes(add addFunc) {
	if len(s.Meshes) == 0 {
		add("meshes", "list at least one mesh (use {name: none, mode: baseline} for the baseline)")
	}
	seen := map[MeshRef]int{}
	for i, m := range s.Meshes {
		path := fmt.Sprintf("meshes[%d]", i)
		if !knownMode(m.Mode) {
			add(path+".mode", "unknown mode %q (known: %s)", m.Mode, modeList())
		}
		if j, dup := seen[m]; dup {
			add(path, "%s is listed twice (also meshes[%d])", m, j)
		}
		seen[m] = i
	}
}

func (s *Scenario) validateLoad(add addFunc) {
	l := s.Load
	if l.Protocol != "http" {
		add("load.protocol", "unsupported protocol %q (supported: http)", l.Protocol)
	}
	switch {
	case len(l.Rates) > 0 && l.QPS != 0:
		add("load.rates", "set either load.qps (one rate) or load.rates (a sweep), not both")
	case len(l.Rates) > 0:
		seen := map[float64]bool{}
		for i, r := range l.Rates {
			if r <= 0 || r > MaxQPS {
				add(fmt.Sprintf("load.rates[%d]", i), "must be greater than 0 and at most %d, got %g", MaxQPS, r)
			}
			if seen[r] {
				add(fmt.Sprintf("load.rates[%d]", i), "rate %g is listed twice", r)
			}
			seen[r] = true
		}
	case l.QPS <= 0 || l.QPS > MaxQPS:
		if _, set := s.pos["load.qps"]; !set && l.QPS == 0 {
			add("load", "set load.qps (requests per second) or load.rates (a sweep)")
		} else {
			add("load.qps", "must be greater than 0 and at most %d, got %g", MaxQPS, l.QPS)
		}
	}
	if l.Connections < 1 || l.Connections > MaxConnections {
		add("load.connections", "must be between 1 and %d, got %d", MaxConnections, l.Connections)
	}
	if l.Duration <= 0 || l.Duration > MaxDuration {
		add("load.duration", "must be greater than 0 and at most %s, got %s", MaxDuration, l.Duration)
	}
	if l.Warmup < 0 || l.Warmup > MaxDuration {
		add("load.warmup", "must be between 0 and %s, got %s", MaxDuration, l.Warmup)
	}
	if l.RequestSize > MaxPayload {
		add("load.requestSize", "must be at most %s, got %s", MaxPayload, l.RequestSize)
	}
}

func knownMode(m Mode) bool {
	for _, k := range Modes {
		if k == m {
			return true
		}
	}
	return false
}

func modeList() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}
