package scenarios

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Platforms are the platform names a scenario may give.
var Platforms = []string{"local", "kind", "kube"}

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
	// Which platform runs the scenario is the command's choice (--platform
	// overrides this field, and says what this build can run); here only
	// the name is checked.
	if !slices.Contains(Platforms, s.Platform) {
		add("platform", "unknown platform %q (known: %s)", s.Platform, strings.Join(Platforms, ", "))
	}
	s.validateTopology(add)
	s.validateMeshes(add)
	if s.ControlPlane != nil {
		s.validateControlPlane(add)
	} else if !s.setUnder("load") {
		add("load", "missing: set load (the traffic to measure), or controlPlane (a control-plane benchmark)")
	} else {
		s.validateLoad(add)
	}
	if s.Order != OrderRotate && s.Order != OrderRandom {
		add("order", "unknown order %q (rotate, random)", s.Order)
	}
	s.validatePolicies(add)
	s.validateFaults(add)
	s.validateProbes(add)
	for i, text := range s.SLOs {
		if _, err := ParseObjective(text); err != nil {
			add(fmt.Sprintf("slos[%d]", i), "%v", err)
		}
	}
	if s.Trials < 1 || s.Trials > MaxTrials {
		add("trials", "must be between 1 and %d, got %d", MaxTrials, s.Trials)
	}
	return errs.err()
}

type addFunc func(path, format string, args ...any)

// setUnder reports whether path, or a field under it, was set.
func (s *Scenario) setUnder(path string) bool {
	for p := range s.pos {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// MaxBenchClients bounds a control-plane benchmark's client count.
const MaxBenchClients = 20000

// validateControlPlane checks a control-plane benchmark, and that the
// scenario sets nothing it would not use.
func (s *Scenario) validateControlPlane(add addFunc) {
	c := s.ControlPlane
	for _, field := range []string{"load", "slos", "trials"} {
		if s.setUnder(field) {
			add(field, "a control-plane benchmark measures configuration changes, not load: remove %s (controlPlane.repeats repeats each change)", field)
		}
	}
	if len(s.PolicyChanges()) > 0 {
		add("policies", "a control-plane benchmark makes its own changes: policies with at: are for load runs")
	}
	if len(c.Clients) == 0 {
		add("controlPlane.clients", "list at least one client count")
	}
	for i, n := range c.Clients {
		if n < 1 || n > MaxBenchClients {
			add(fmt.Sprintf("controlPlane.clients[%d]", i), "must be between 1 and %d, got %d", MaxBenchClients, n)
		} else if i > 0 && n <= c.Clients[i-1] {
			add(fmt.Sprintf("controlPlane.clients[%d]", i), "client counts must increase, got %d after %d", n, c.Clients[i-1])
		}
	}
	for i, k := range c.Changes {
		if !slices.Contains(ControlPlaneChanges, k) {
			add(fmt.Sprintf("controlPlane.changes[%d]", i), "unknown change %q (%s)", k, strings.Join(ControlPlaneChanges, ", "))
		} else if slices.Index(c.Changes, k) < i {
			add(fmt.Sprintf("controlPlane.changes[%d]", i), "change %q is listed twice", k)
		}
	}
	if c.Repeats < 1 || c.Repeats > MaxTrials {
		add("controlPlane.repeats", "must be between 1 and %d, got %d", MaxTrials, c.Repeats)
	}
	if c.Timeout < Duration(time.Second) || c.Timeout > Duration(10*time.Minute) {
		add("controlPlane.timeout", "must be between 1s and 10m, got %s", c.Timeout)
	}
}

// MaxServices bounds a topology's size (each service is a node).
const MaxServices = 16

// MaxReplicas bounds a service's pods.
const MaxReplicas = 8

func (s *Scenario) validateTopology(add addFunc) {
	t := s.Topology
	if !nameRE.MatchString(t.Client.Name) {
		add("topology.client.name", "%q is not a valid workload name: use 1-32 lowercase letters, digits and '-'", t.Client.Name)
	} else if t.Client.Name == ControlPlaneNode {
		add("topology.client.name", "%q names the node of a mesh's control plane: choose another name", t.Client.Name)
	}
	if len(t.Services) > 0 {
		if _, set := s.pos["topology.server"]; set {
			add("topology.services", "set either topology.server (client -> server) or topology.services, not both")
		}
		if len(t.Services) > MaxServices {
			add("topology.services", "at most %d services, got %d", MaxServices, len(t.Services))
		}
	}
	svcs := t.ServiceList()
	index := map[string]int{}
	for i, svc := range svcs {
		path := t.servicePath(i)
		switch {
		case !nameRE.MatchString(svc.Name):
			add(path+".name", "%q is not a valid workload name: use 1-32 lowercase letters, digits and '-'", svc.Name)
		case svc.Name == t.Client.Name:
			add(path+".name", "the client and a service must have different names, both are %q", svc.Name)
		default:
			if r := reservedName(svc.Name); r != "" {
				add(path+".name", "%q ends or starts with %q, which meshbench gives the components of meshes (their logs would collide)", svc.Name, r)
			} else if svc.Name == ControlPlaneNode {
				add(path+".name", "%q names the node of a mesh's control plane: choose another name", svc.Name)
			}
			if j, dup := index[svc.Name]; dup {
				add(path+".name", "service %q is listed twice (also %s)", svc.Name, t.servicePath(j))
			}
			index[svc.Name] = i
		}
		if svc.Replicas < 0 || svc.Replicas > MaxReplicas {
			add(path+".replicas", "must be between 1 and %d, got %d", MaxReplicas, svc.Replicas)
		}
		if svc.PayloadSize > MaxPayload {
			add(path+".payloadSize", "must be at most %s, got %s", MaxPayload, svc.PayloadSize)
		}
		if svc.ServiceTime < 0 || svc.ServiceTime > Duration(10*time.Second) {
			add(path+".serviceTime", "must be between 0 and 10s, got %s", svc.ServiceTime)
		}
	}
	graphOK := true
	for i, svc := range svcs {
		called := map[string]bool{}
		for k, c := range svc.Calls {
			cp := fmt.Sprintf("%s.calls[%d]", t.servicePath(i), k)
			_, known := index[c]
			switch {
			case !known:
				add(cp, "unknown service %q (services: %s)", c, serviceNames(svcs))
				graphOK = false
			case c == svc.Name:
				add(cp, "service %q calls itself", c)
				graphOK = false
			case called[c]:
				add(cp, "service %q is listed twice", c)
			}
			called[c] = true
		}
	}
	s.validateNodes(add)
	if !graphOK || len(index) != len(svcs) {
		return
	}
	// Replicas' pod names (<service>-<i>) must not be another workload's.
	owner := map[string]int{t.Client.Name: -1} // pod name -> service index
	for i, svc := range svcs {
		for _, n := range svc.PodNames() {
			if j, taken := owner[n]; taken && j == -1 && n != svc.Name {
				add(t.servicePath(i)+".replicas", "a replica would be named %q, as the client is", n)
			} else if taken && j >= 0 && j != i {
				replicated := i
				if n == svc.Name {
					replicated = j
				}
				add(t.servicePath(replicated)+".replicas", "a replica would be named %q, as service %s is (replicas are named <service>-1, <service>-2 ...)", n, n)
			}
			owner[n] = i
		}
	}
	for i, svc := range svcs {
		if svc.Replicas > 1 && len(s.Policies) > 0 {
			add(t.servicePath(i)+".replicas", "replicated services with policies are not supported yet")
		}
	}
	// Every service is reached from the entry, and no call loops back.
	const (
		unseen = iota
		active
		done
	)
	state := make([]int, len(svcs))
	// A service that a policy (a TrafficSplit, a mesh route) sends to
	// instead of another is reached when that one is.
	alternatives := s.Alternatives()
	var visit func(i int)
	visit = func(i int) {
		state[i] = active
		for k, c := range svcs[i].Calls {
			switch j := index[c]; state[j] {
			case active:
				add(fmt.Sprintf("%s.calls[%d]", t.servicePath(i), k), "calling %q closes a loop: calls must not cycle", c)
			case unseen:
				visit(j)
			}
		}
		for _, alt := range alternatives[svcs[i].Name] {
			if j, ok := index[alt]; ok && state[j] == unseen {
				visit(j)
			}
		}
		state[i] = done
	}
	visit(0)
	if longest := criticalPath(svcs, index); longest > MaxPathServiceTime {
		add(t.servicePath(0), "the service times along the longest call path add up to %s, more than %s: the proxies' and services' request timeouts would cut it", longest, MaxPathServiceTime)
	}
	for i, st := range state {
		if st == unseen {
			why := ""
			if len(s.Policies) > 0 {
				why = ", nor a backend of a policy of theirs"
			}
			add(t.servicePath(i)+".name", "service %q is not called by %s or by any service it calls%s", svcs[i].Name, svcs[0].Name, why)
		}
	}
}

// validateNodes checks the nodes services share: valid names that no pod
// has, and nothing that addresses one pod's traffic where a node's pods
// share a proxy (policy, faults and probes target a pod's own listener,
// network and process).
func (s *Scenario) validateNodes(add addFunc) {
	t := s.Topology
	pods := map[string]bool{}
	for _, p := range t.Workloads() {
		pods[p] = true
	}
	first := ""
	for i, svc := range t.ServiceList() {
		if svc.Node == "" {
			continue
		}
		path := t.servicePath(i) + ".node"
		if first == "" {
			first = path
		}
		switch {
		case !nameRE.MatchString(svc.Node):
			add(path, "%q is not a valid node name: use 1-32 lowercase letters, digits and '-'", svc.Node)
		case pods[svc.Node]:
			add(path, "%q is a workload's name: a shared node needs a name of its own", svc.Node)
		case svc.Node == "ca":
			add(path, `"ca" names the mesh's certificate authority's files: choose another node name`)
		case svc.Node == ControlPlaneNode:
			add(path, "%q names the node of a mesh's control plane: choose another node name", svc.Node)
		}
	}
	if first != "" {
		var with []string
		if len(s.Policies) > 0 {
			with = append(with, "policies")
		}
		if len(s.Faults) > 0 {
			with = append(with, "faults")
		}
		if len(s.Probes) > 0 {
			with = append(with, "probes")
		}
		if len(with) > 0 {
			add(first, "services on a shared node run without %s for now (they address one pod's listener, network or processes, which a node's pods share)", strings.Join(with, ", "))
		}
	}
}

// MaxPathServiceTime bounds the service time a request accumulates along
// its longest call path (the meshes' request timeouts are 15 s).
const MaxPathServiceTime = Duration(10 * time.Second)

// criticalPath is the largest sum of service times along a call path from
// the entry (calls run in parallel, so a request waits for the slowest).
// The graph has been checked to be acyclic.
func criticalPath(svcs []Service, index map[string]int) Duration {
	memo := map[int]Duration{}
	var longest func(i int) Duration
	longest = func(i int) Duration {
		if d, ok := memo[i]; ok {
			return d
		}
		memo[i] = svcs[i].ServiceTime // guards against a loop the caller missed
		var worst Duration
		for _, c := range svcs[i].Calls {
			worst = max(worst, longest(index[c]))
		}
		memo[i] = svcs[i].ServiceTime + worst
		return memo[i]
	}
	return longest(0)
}

// reservedName returns the affix of name that meshbench uses for mesh
// components ("-sidecar", "node-", ...), or "".
func reservedName(name string) string {
	for _, suffix := range []string{"-sidecar", "-haproxy", "-nginx", "-proxyless"} {
		if strings.HasSuffix(name, suffix) {
			return suffix
		}
	}
	if strings.HasPrefix(name, "node-") {
		return "node-"
	}
	return ""
}

func serviceNames(svcs []Service) string {
	names := make([]string, len(svcs))
	for i, svc := range svcs {
		names[i] = svc.Name
	}
	return strings.Join(names, ", ")
}

func (s *Scenario) validateMeshes(add addFunc) {
	if len(s.Meshes) == 0 {
		add("meshes", "list at least one mesh (use {name: none, mode: baseline} for the baseline)")
	}
	seen := map[string]int{}
	for i, m := range s.Meshes {
		path := fmt.Sprintf("meshes[%d]", i)
		if !knownMode(m.Mode) {
			add(path+".mode", "unknown mode %q (known: %s)", m.Mode, modeList())
		}
		if m.As != "" && !nameRE.MatchString(m.As) {
			add(path+".as", "%q is not a valid name: use 1-32 lowercase letters, digits and '-'", m.As)
		}
		if p := m.Proxy; p != nil && p.GOGC == GCOff && p.MemoryLimit == 0 {
			add(path+".proxy.memoryLimit", "missing: with gogc: off only the memory limit starts a collection")
		}
		if p := m.Proxy; p != nil && p.Layer != "" && p.Layer != LayerL4 && p.Layer != LayerL7 {
			add(path+".proxy.layer", "unknown layer %q (known: %s, %s)", p.Layer, LayerL4, LayerL7)
		} else if p != nil && p.Layer != "" && m.Mode != PerNode {
			add(path+".proxy.layer", "a layer is a per-node proxy's, not mode %s's", m.Mode)
		}
		if p := m.Proxy; p != nil && p.Waypoint && p.Layer != LayerL4 {
			add(path+".proxy.waypoint", "a waypoint serves L4 node proxies: set layer: %s", LayerL4)
		}
		if p := m.Proxy; p != nil && p.HTTP1 != "" && p.HTTP1 != HTTP1NetHTTP && p.HTTP1 != HTTP1FastHTTP {
			add(path+".proxy.http1", "unknown HTTP/1.1 engine %q (known: %s, %s)", p.HTTP1, HTTP1NetHTTP, HTTP1FastHTTP)
		}
		if p := m.Proxy; p != nil && p.Binary != "" && !filepath.IsAbs(p.Binary) {
			add(path+".proxy.binary", "%q: name the executable by its absolute path", p.Binary)
		}
		if j, dup := seen[m.String()]; dup {
			add(path, "%s is listed twice (also meshes[%d]); name a variant's row with as", m, j)
		}
		seen[m.String()] = i
	}
}

func (s *Scenario) validateLoad(add addFunc) {
	l := s.Load
	if !slices.Contains(Protocols, l.Protocol) {
		add("load.protocol", "unknown protocol %q (known: %s)", l.Protocol, strings.Join(Protocols, ", "))
	}
	if l.Protocol == ProtocolTCP {
		// A TCP echo has no requests a service could fan out, and
		// meshbench's policies are HTTP and gRPC routes.
		for i, svc := range s.Topology.ServiceList() {
			if len(svc.Calls) > 0 {
				add(s.Topology.servicePath(i)+".calls", "load.protocol tcp: a TCP echo service calls no other service (use http, http2 or grpc for call chains)")
			}
		}
		if len(s.Policies) > 0 {
			add("policies", "load.protocol tcp: traffic policies route HTTP and gRPC requests; use http, http2 or grpc load with policies")
		}
	}
	if l.Max != nil {
		if len(l.Rates) > 0 || l.QPS != 0 {
			add("load.max", "set one of load.qps (one rate), load.rates (a sweep) or load.max (a search)")
		}
		s.validateMax(add)
	}
	switch {
	case l.Max != nil:
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

func (s *Scenario) validateMax(add addFunc) {
	m := s.Load.Max
	if m.Start <= 0 || m.Start > MaxQPS {
		add("load.max.start", "must be greater than 0 and at most %d, got %g", MaxQPS, m.Start)
	}
	if m.Limit < m.Start || m.Limit > MaxQPS {
		add("load.max.limit", "must be at least load.max.start (%g) and at most %d, got %g", m.Start, MaxQPS, m.Limit)
	}
	if m.Precision <= 0 || m.Precision >= 1 {
		add("load.max.precision", "must be between 0 and 1 (e.g. 0.05 for 5%%), got %g", m.Precision)
	}
	if m.MaxProbes < 2 || m.MaxProbes > 50 {
		add("load.max.maxProbes", "must be between 2 and 50, got %d", m.MaxProbes)
	}
	slo := m.SLO
	if slo.P50 == 0 && slo.P90 == 0 && slo.P99 == 0 && slo.P999 == 0 {
		add("load.max.slo", "set at least one latency bound (p50, p90, p99, p99.9)")
	}
	for key, d := range map[string]Duration{"p50": slo.P50, "p90": slo.P90, "p99": slo.P99, "p99.9": slo.P999} {
		if d < 0 {
			add("load.max.slo."+key, "must not be negative, got %s", d)
		}
	}
	if slo.ErrorRate < 0 || slo.ErrorRate > 1 {
		add("load.max.slo.errorRate", "must be between 0 and 1, got %g", slo.ErrorRate)
	}
	if slo.MinAchieved <= 0 || slo.MinAchieved > 1 {
		add("load.max.slo.minAchieved", "must be greater than 0 and at most 1, got %g", slo.MinAchieved)
	}
}
