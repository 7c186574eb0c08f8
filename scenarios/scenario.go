// Package scenarios defines meshbench's scenario schema (v1), loads scenario
// files strictly (every error reported with file:line:column and the field
// path), fills defaults, validates, and embeds the built-in scenario library.
//
// It describes what to run; it does not run anything (that is package
// runner) and knows nothing about platforms or processes.
package scenarios

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the schema version this package reads and writes.
const APIVersion = "meshbench/v1"

// Mode is how a mesh's data plane sits relative to the workloads.
type Mode string

// The data-plane modes meshbench compares.
const (
	// Baseline is no mesh at all: the client talks to the server directly.
	Baseline Mode = "baseline"
	// Sidecar is one proxy next to each workload.
	Sidecar Mode = "sidecar"
	// PerNode is one shared proxy per node (ztunnel-style).
	PerNode Mode = "per-node"
	// Proxyless is a library in the workload instead of a proxy.
	Proxyless Mode = "proxyless"
	// ProxylessGRPC is grpc-go's own xDS client and server in the
	// workloads (gRPC load only).
	ProxylessGRPC Mode = "proxyless-grpc"
)

// Modes lists every mode the schema knows, in comparison order.
var Modes = []Mode{Baseline, Sidecar, PerNode, Proxyless, ProxylessGRPC}

// Scenario is one experiment: a topology, the meshes and modes to compare on
// it, and the load to drive through each. Zero values mean "default"; call
// Normalize to fill them.
type Scenario struct {
	APIVersion  string    `yaml:"apiVersion" json:"apiVersion" mb:"required"`
	Name        string    `yaml:"name" json:"name" mb:"required"`
	Description string    `yaml:"description" json:"description,omitempty"`
	Platform    string    `yaml:"platform" json:"platform"`
	Topology    Topology  `yaml:"topology" json:"topology"`
	Meshes      []MeshRef `yaml:"meshes" json:"meshes" mb:"required"`
	// Load is the traffic to measure; a scenario sets it, or ControlPlane.
	Load Load `yaml:"load" json:"load"`
	// ControlPlane, instead of load, benchmarks the meshes' control
	// planes: how fast a configuration change reaches their clients.
	ControlPlane *ControlPlaneBench `yaml:"controlPlane" json:"controlPlane,omitempty"`
	Trials       int                `yaml:"trials" json:"trials"`
	// Order is how each trial orders the (mesh, mode) pairs: "rotate"
	// (each takes every position in turn, and every second trial runs the
	// order backwards, so that over an even number of trials any two run
	// in both orders alike) or
	// "random" (shuffled per trial with Seed; 0 picks a seed, which the
	// manifest records).
	Order string `yaml:"order" json:"order"`
	// Seed also seeds the faults' random choices (their selectors' modes).
	Seed uint64 `yaml:"seed" json:"seed,omitempty"`
	// SLOs are objectives reports check (see Objective), e.g.
	// "p99 < 2ms at 1000 rps".
	SLOs []string `yaml:"slos" json:"slos,omitempty"`
	// Policies are traffic-policy objects (SMI, Gateway API for mesh),
	// each in force from its at offset.
	Policies []Policy `yaml:"policies" json:"policies,omitempty"`
	// OnUnsupportedPolicy is what a (mesh, mode) that cannot express the
	// policies does: "refuse" (the run does not start) or "skip" (the
	// pair is left out, and the run says so).
	OnUnsupportedPolicy string `yaml:"onUnsupportedPolicy" json:"onUnsupportedPolicy,omitempty"`
	// Faults are Chaos Mesh objects injected during the measured window,
	// each from its at offset for its own duration.
	Faults []Fault `yaml:"faults" json:"faults,omitempty"`
	// Probes are the game day's steady-state hypotheses, judged per
	// (mesh, mode, trial) into a verdict and a resilience score.
	Probes []Probe `yaml:"probes" json:"probes,omitempty"`

	// pos holds where each field path was set: a file position, or the
	// flag that overrode it.
	pos map[string]Position
}

// ControlPlaneBench measures a control plane's propagation: for each
// count in Clients, the deployment's own xDS clients (its proxies, or
// proxyless workloads) and simulated ones up to that count are connected;
// then each kind of change in Changes is made Repeats times, and the time
// until each client acknowledged it is recorded, with the control plane's
// CPU and memory.
type ControlPlaneBench struct {
	Clients []int `yaml:"clients" json:"clients" mb:"required"`
	// Changes are the kinds of change made: listener, route, cluster,
	// endpoint (the default is all four).
	Changes []string `yaml:"changes" json:"changes"`
	Repeats int      `yaml:"repeats" json:"repeats"`
	// Timeout bounds the wait for every client, to connect and to
	// acknowledge each change.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// ControlPlaneChanges are the kinds of change a control-plane benchmark
// makes (what meshbench's control plane's /bench/change accepts).
var ControlPlaneChanges = []string{"listener", "route", "cluster", "endpoint"}

// Topology is the application under test: a client calling a server, or
// calling the first of several services that call each other (a chain, a
// fan-out, any acyclic graph). Each workload runs on a node of its own,
// unless services name a node they share (Service.Node).
type Topology struct {
	Client Client `yaml:"client" json:"client"`
	// Server is the one service of a client -> server topology. Set it or
	// Services, not both.
	Server Server `yaml:"server" json:"server"`
	// Services are the services of a larger topology: the client calls
	// Services[0], and each service calls the ones it lists in Calls (all
	// of them, in parallel, for every request it serves).
	Services []Service `yaml:"services" json:"services,omitempty"`
}

// ControlPlaneNode is the node a mesh's control plane runs on, which a
// run adds to the topology's when a row's mesh has a control plane (on
// Kubernetes, a Deployment's pod): no workload or shared node may take
// its name.
const ControlPlaneNode = "control-plane"

// Service is one service of a multi-service topology.
type Service struct {
	Name        string   `yaml:"name" json:"name" mb:"required"`
	PayloadSize ByteSize `yaml:"payloadSize" json:"payloadSize"`
	ServiceTime Duration `yaml:"serviceTime" json:"serviceTime"`
	// Replicas is how many pods serve the service (1 when unset), each on
	// a node of its own (or all on Node); see PodNames.
	Replicas int `yaml:"replicas" json:"replicas,omitempty"`
	// Calls names the services this one calls for every request.
	Calls []string `yaml:"calls" json:"calls,omitempty"`
	// Node, when set, names a node the service's pods share with the
	// other services' pods that name it (on Kubernetes, by pod affinity to
	// the node's own pod): a per-node proxy there serves them all. Unset,
	// each pod has a node of its own.
	Node string `yaml:"node" json:"node,omitempty"`
	// Selects are services whose workloads this one's selector covers too
	// (a Kubernetes Service over their pods). Not in scenario files: the
	// conformance suite's traffic-split sets it.
	Selects []string `yaml:"-" json:"selects,omitempty"`
}

// ServiceList is the topology's services, entry first: Services, or the
// one Server.
func (t Topology) ServiceList() []Service {
	if len(t.Services) > 0 {
		return t.Services
	}
	return []Service{{Name: t.Server.Name, PayloadSize: t.Server.PayloadSize, ServiceTime: t.Server.ServiceTime, Replicas: t.Server.Replicas}}
}

// PodNames are the names of the service's pods: the service's own for the
// first, then <name>-1, <name>-2 ... for its other replicas (at most
// MaxReplicas: more is an error Validate reports).
func (s Service) PodNames() []string {
	names := []string{s.Name}
	for i := 1; i < min(s.Replicas, MaxReplicas); i++ {
		names = append(names, fmt.Sprintf("%s-%d", s.Name, i))
	}
	return names
}

// Pod is one of the topology's pods: its name and its app label, which
// fault selectors match (its service's name; the client's own).
type Pod struct {
	Name, App string
}

// Pods are the client's pod and every service's, client first.
func (t Topology) Pods() []Pod {
	out := []Pod{{Name: t.Client.Name, App: t.Client.Name}}
	for _, svc := range t.ServiceList() {
		for _, n := range svc.PodNames() {
			out = append(out, Pod{Name: n, App: svc.Name})
		}
	}
	return out
}

// NodeOf is the shared node the pod named pod runs on (its service's
// Node), or "" when the pod has a node of its own.
func (t Topology) NodeOf(pod string) string {
	for _, svc := range t.ServiceList() {
		if svc.Node != "" && slices.Contains(svc.PodNames(), pod) {
			return svc.Node
		}
	}
	return ""
}

// SharedNodes are the nodes services name (Service.Node), in the order
// they are first named.
func (t Topology) SharedNodes() []string {
	var out []string
	for _, svc := range t.ServiceList() {
		if svc.Node != "" && !slices.Contains(out, svc.Node) {
			out = append(out, svc.Node)
		}
	}
	return out
}

// Replicated says a service has more than one pod.
func (t Topology) Replicated() bool {
	for _, svc := range t.ServiceList() {
		if svc.Replicas > 1 {
			return true
		}
	}
	return false
}

// servicePath is the field path of service i in error messages.
func (t Topology) servicePath(i int) string {
	if len(t.Services) > 0 {
		return fmt.Sprintf("topology.services[%d]", i)
	}
	return "topology.server"
}

// Workloads names every workload of the topology, client first: each pod
// (every replica of a service is a workload of its own, on its own node).
func (t Topology) Workloads() []string {
	var names []string
	for _, p := range t.Pods() {
		names = append(names, p.Name)
	}
	return names
}

// Shape describes the call graph in one line, e.g. "client>api" or
// "client>front, front>a, front>b".
func (t Topology) Shape() string {
	svcs := t.ServiceList()
	name := func(n string) string { // a replicated service's pod count
		for _, s := range svcs {
			if s.Name == n && s.Replicas > 1 {
				return fmt.Sprintf("%s×%d", n, s.Replicas)
			}
		}
		return n
	}
	edges := []string{t.Client.Name + ">" + name(svcs[0].Name)}
	for _, svc := range svcs {
		for _, c := range svc.Calls {
			edges = append(edges, name(svc.Name)+">"+name(c))
		}
	}
	return strings.Join(edges, ", ")
}

// Client is the calling workload; it runs the load generator.
type Client struct {
	Name string `yaml:"name" json:"name"`
}

// Server is the called workload: fortio's echo server.
type Server struct {
	Name string `yaml:"name" json:"name"`
	// PayloadSize is the response body size.
	PayloadSize ByteSize `yaml:"payloadSize" json:"payloadSize"`
	// ServiceTime is how long the server waits before answering.
	ServiceTime Duration `yaml:"serviceTime" json:"serviceTime"`
	// Replicas is how many pods serve it (1 when unset).
	Replicas int `yaml:"replicas" json:"replicas,omitempty"`
}

// MeshRef names one mesh and the mode to run it in.
type MeshRef struct {
	Name string `yaml:"name" json:"name" mb:"required"`
	Mode Mode   `yaml:"mode" json:"mode" mb:"required"`
	// As names the mesh's row instead of Name: a variant of a mesh (its
	// proxies tuned otherwise) measured beside the mesh itself, trial by
	// trial in the same run.
	As string `yaml:"as" json:"as,omitempty"`
	// Proxy tunes the mesh's proxy processes (the own mesh's sidecar and
	// per-node proxies).
	Proxy *ProxyTuning `yaml:"proxy" json:"proxy,omitempty"`
}

// Row is the name the mesh's results carry: As, or Name.
func (m MeshRef) Row() string {
	if m.As != "" {
		return m.As
	}
	return m.Name
}

func (m MeshRef) String() string { return m.Row() + "/" + string(m.Mode) }

// ProxyTuning is a Go proxy's build and runtime policy: its garbage
// collector's target and memory limit (the GOGC and GOMEMLIMIT of the Go
// runtime), and, for a per-node proxy, the layer it works at.
type ProxyTuning struct {
	// GOGC is the percent the heap grows over the live heap before a
	// collection (Go's default is 100), or off.
	GOGC GOGC `yaml:"gogc" json:"gogc,omitempty"`
	// MemoryLimit is the soft limit the collector keeps the process's Go
	// memory under (GOMEMLIMIT); 0 is none. With gogc: off it is what
	// starts a collection, and is required.
	MemoryLimit ByteSize `yaml:"memoryLimit" json:"memoryLimit,omitempty"`
	// Binary is another build of the proxy to run instead of the one
	// beside meshbench (a candidate, or the full meshbench binary): an
	// executable taking `meshbench proxy`'s arguments.
	Binary string `yaml:"binary" json:"binary,omitempty"`
	// Layer is what a per-node proxy reads of its workloads' traffic:
	// LayerL7 (the default: requests, routed by authority, stamped with
	// their source and multiplexed between nodes) or LayerL4 (ambient's
	// node proxy: each connection carried whole as an HTTP/2 CONNECT
	// stream between nodes, HBONE-style, with workload-identity mutual TLS
	// and RBAC by identity; no L7 policy).
	Layer string `yaml:"layer" json:"layer,omitempty"`
	// Waypoint, with LayerL4, puts an L7 proxy (ambient's waypoint) in
	// front of each called service: the callers' node proxies tunnel to
	// it, and it applies the service's L7 policy (routes, splits,
	// retries, RBAC by the caller's identity) and tunnels each request on
	// to the node of the pod it picks.
	Waypoint bool `yaml:"waypoint" json:"waypoint,omitempty"`
	// HTTP1 is the proxies' HTTP/1.1 engine: HTTP1NetHTTP (the default)
	// or HTTP1FastHTTP (github.com/valyala/fasthttp: fewer allocations
	// and less CPU per request; bodies held whole; listeners using a
	// feature it lacks stay on net/http, and HTTP/2 always does).
	HTTP1 string `yaml:"http1" json:"http1,omitempty"`
}

// The proxies' HTTP/1.1 engines (ProxyTuning.HTTP1).
const (
	HTTP1NetHTTP  = "net/http"
	HTTP1FastHTTP = "fasthttp"
)

// Per-node proxy layers (ProxyTuning.Layer).
const (
	LayerL4 = "l4"
	LayerL7 = "l7"
)

// GOGC is a garbage-collection target percent written as 200, or "off"
// (GCOff); 0 is unset.
type GOGC int

// GCOff turns the percent target off (collections start only at the
// memory limit).
const GCOff GOGC = -1

func (g *GOGC) decodeScalar(value, tag string) error {
	if tag == "!!str" && value == "off" {
		*g = GCOff
		return nil
	}
	n, err := strconv.Atoi(value)
	if tag != "!!int" || err != nil || n < 1 {
		return fmt.Errorf("expected a percent of at least 1 such as 200, or off, got %s", value)
	}
	*g = GOGC(n)
	return nil
}

// String is the value as GOGC takes it ("off", "200"); "" when unset.
func (g GOGC) String() string {
	switch {
	case g == GCOff:
		return "off"
	case g > 0:
		return strconv.Itoa(int(g))
	}
	return ""
}

// Load protocols.
const (
	// ProtocolHTTP is HTTP/1.1 requests, fortio's HTTP client.
	ProtocolHTTP = "http"
	// ProtocolHTTP2 is HTTP/2 requests (cleartext, prior knowledge).
	ProtocolHTTP2 = "http2"
	// ProtocolGRPC is fortio's gRPC ping service over HTTP/2.
	ProtocolGRPC = "grpc"
	// ProtocolTCP is fortio's TCP echo: each request writes a payload on
	// a long-lived connection and reads it back.
	ProtocolTCP = "tcp"
)

// Protocols lists the load protocols.
var Protocols = []string{ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP}

// Load is the traffic driven through each (mesh, mode).
type Load struct {
	// Protocol is one of Protocols (http when unset).
	Protocol string `yaml:"protocol" json:"protocol"`
	// QPS is the fixed request rate; Rates, instead, sweeps several (each
	// (mesh, mode) runs its trials at every rate).
	QPS         float64   `yaml:"qps" json:"qps,omitempty"`
	Rates       []float64 `yaml:"rates" json:"rates,omitempty"`
	Connections int       `yaml:"connections" json:"connections"`
	Duration    Duration  `yaml:"duration" json:"duration" mb:"required"`
	Warmup      Duration  `yaml:"warmup" json:"warmup"`
	// RequestSize is the request body size; 0 sends GET requests.
	RequestSize ByteSize `yaml:"requestSize" json:"requestSize"`
	// Max, instead of fixed rates, searches each (mesh, mode) for the
	// highest rate that meets a latency SLO.
	Max *MaxSearch `yaml:"max" json:"max,omitempty"`
}

// MaxSearch is a search for the highest rate at which a (mesh, mode) meets
// an SLO: probes of load.duration each, doubling from Start until a probe
// misses the SLO (or reaches Limit), then bisecting between the last rate
// that met it and the first that did not, until the two are within
// Precision of each other or MaxProbes probes have run.
type MaxSearch struct {
	// SLO is what every probe must meet.
	SLO SLO `yaml:"slo" json:"slo" mb:"required"`
	// Start is the first rate probed; Limit the highest ever probed.
	Start float64 `yaml:"start" json:"start"`
	Limit float64 `yaml:"limit" json:"limit"`
	// Precision is the relative width (e.g. 0.05 for 5%) at which the
	// bisection stops.
	Precision float64 `yaml:"precision" json:"precision"`
	// MaxProbes bounds the number of probes per (mesh, mode, trial).
	MaxProbes int `yaml:"maxProbes" json:"maxProbes"`
}

// SLO is a latency objective: fortio-measured percentiles at most these
// values, an error ratio at most ErrorRate, and an achieved rate within
// MinAchieved (a ratio) of the requested one.
type SLO struct {
	P50  Duration `yaml:"p50" json:"p50,omitempty"`
	P90  Duration `yaml:"p90" json:"p90,omitempty"`
	P99  Duration `yaml:"p99" json:"p99,omitempty"`
	P999 Duration `yaml:"p99.9" json:"p99.9,omitempty"`
	// ErrorRate is the highest fraction of failed requests (0 to 1).
	ErrorRate float64 `yaml:"errorRate" json:"errorRate"`
	// MinAchieved is the lowest achieved/requested rate ratio.
	MinAchieved float64 `yaml:"minAchieved" json:"minAchieved"`
}

// String renders the SLO, e.g. "p99 <= 5ms, errors <= 0.1%, achieved >= 95%".
func (s SLO) String() string {
	var parts []string
	for _, b := range []struct {
		name string
		d    Duration
	}{{"p50", s.P50}, {"p90", s.P90}, {"p99", s.P99}, {"p99.9", s.P999}} {
		if b.d > 0 {
			parts = append(parts, b.name+" <= "+b.d.String())
		}
	}
	parts = append(parts, fmt.Sprintf("errors <= %g%%", s.ErrorRate*100), fmt.Sprintf("achieved >= %g%%", s.MinAchieved*100))
	return strings.Join(parts, ", ")
}

// Trial orders.
const (
	OrderRotate = "rotate"
	OrderRandom = "random"
)

// Defaults used by Normalize.
const (
	DefaultPlatform    = "local"
	DefaultProtocol    = ProtocolHTTP
	DefaultConnections = 8
	DefaultWarmup      = Duration(2 * time.Second)
	DefaultTrials      = 1
	// DefaultRepeats and DefaultChangeTimeout are a control-plane
	// benchmark's.
	DefaultRepeats       = 5
	DefaultChangeTimeout = Duration(30 * time.Second)
	DefaultClientName    = "client"
	DefaultServerName    = "server"
	// Max-search defaults.
	DefaultMaxStart       = 500
	DefaultMaxLimit       = 50000
	DefaultMaxPrecision   = 0.1
	DefaultMaxProbes      = 12
	DefaultSLOMinAchieved = 0.95
)

// Parse reads a scenario from YAML. file names the source in errors. The
// result is normalized but not validated.
func Parse(file string, data []byte) (*Scenario, error) {
	s := &Scenario{}
	pos, err := decodeStrict(file, data, s)
	// load needs one of qps and rates: reported with the structural errors,
	// so that a file's problems all come at once.
	if lp, ok := pos["load"]; ok {
		_, q := pos["load.qps"]
		_, r := pos["load.rates"]
		_, m := pos["load.max"]
		if !q && !r && !m {
			var el ErrorList
			if err != nil {
				el, _ = err.(ErrorList)
			}
			el = append(el, &FieldError{Pos: lp, Path: "load.qps", Msg: "missing required field (or load.rates, for a sweep, or load.max, for a search)"})
			err = el.err()
		}
	}
	if err != nil {
		return nil, err
	}
	s.pos = pos
	s.Normalize()
	return s, nil
}

// LoadFile reads, normalizes and validates a scenario file.
func LoadFile(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return s, s.Validate()
}

// Normalize fills every zero value with its default.
func (s *Scenario) Normalize() {
	if s.Platform == "" {
		s.Platform = DefaultPlatform
	}
	s.normalizeProbes()
	if s.Topology.Client.Name == "" {
		s.Topology.Client.Name = DefaultClientName
	}
	if s.Topology.Server.Name == "" && len(s.Topology.Services) == 0 {
		s.Topology.Server.Name = DefaultServerName
	}
	if m := s.Load.Max; m != nil {
		if s.unset("load.max.start") && m.Start == 0 {
			m.Start = DefaultMaxStart
		}
		if s.unset("load.max.limit") && m.Limit == 0 {
			m.Limit = DefaultMaxLimit
		}
		if s.unset("load.max.precision") && m.Precision == 0 {
			m.Precision = DefaultMaxPrecision
		}
		if s.unset("load.max.maxProbes") && m.MaxProbes == 0 {
			m.MaxProbes = DefaultMaxProbes
		}
		if s.unset("load.max.slo.minAchieved") && m.SLO.MinAchieved == 0 {
			m.SLO.MinAchieved = DefaultSLOMinAchieved
		}
	}
	if s.Order == "" {
		s.Order = OrderRotate
	}
	if c := s.ControlPlane; c != nil {
		if s.unset("controlPlane.changes") && len(c.Changes) == 0 {
			c.Changes = slices.Clone(ControlPlaneChanges)
		}
		if s.unset("controlPlane.repeats") && c.Repeats == 0 {
			c.Repeats = DefaultRepeats
		}
		if s.unset("controlPlane.timeout") && c.Timeout == 0 {
			c.Timeout = DefaultChangeTimeout
		}
	}
	if s.OnUnsupportedPolicy == "" && len(s.Policies) > 0 {
		s.OnUnsupportedPolicy = PolicyRefuse
	}
	if s.Load.Protocol == "" {
		s.Load.Protocol = DefaultProtocol
	}
	// Numbers are defaulted only when absent: an explicit 0 is a mistake
	// that Validate reports, not a request for the default.
	if s.unset("load.connections") && s.Load.Connections == 0 {
		s.Load.Connections = DefaultConnections
	}
	if s.unset("load.warmup") && s.Load.Warmup == 0 {
		s.Load.Warmup = DefaultWarmup
	}
	if s.unset("trials") && s.Trials == 0 {
		s.Trials = DefaultTrials
	}
}

func (s *Scenario) unset(path string) bool {
	_, set := s.pos[path]
	return !set
}

// Objectives parses the scenario's SLOs (Validate has checked them).
func (s *Scenario) Objectives() []Objective {
	var out []Objective
	for _, text := range s.SLOs {
		if o, err := ParseObjective(text); err == nil {
			out = append(out, o)
		}
	}
	return out
}

// RateList is the rates the scenario runs at: Rates, or QPS alone. A max
// search has none fixed: it is calibrated at its start rate.
func (s *Scenario) RateList() []float64 {
	if s.Load.Max != nil {
		return []float64{s.Load.Max.Start}
	}
	if len(s.Load.Rates) > 0 {
		return s.Load.Rates
	}
	return []float64{s.Load.QPS}
}

// Pos returns where the field at path was set, or, when it was not, where
// the closest field around it was.
func (s *Scenario) Pos(path string) Position {
	// A field that was not set is reported where its closest enclosing
	// field was (a list item, a mapping), or else at the top.
	for {
		if p, ok := s.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return s.pos[""]
		}
		path = path[:i]
	}
}

// Override records that a flag, not the file, set the field at path, so that
// errors about it name the flag.
func (s *Scenario) Override(path, flag string) {
	if s.pos == nil {
		s.pos = map[string]Position{}
	}
	s.pos[path] = Position{File: "flag --" + flag}
}

// InsertMesh puts ref into Meshes at index at, set by a flag (errors about
// it name the flag), and moves the recorded positions of the meshes after
// it along, so that their errors still point at their lines.
func (s *Scenario) InsertMesh(at int, ref MeshRef, flag string) {
	s.Meshes = slices.Insert(s.Meshes, at, ref)
	moved := map[string]Position{}
	for path, p := range s.pos {
		var i int
		var rest string
		if n, _ := fmt.Sscanf(path, "meshes[%d]", &i); n == 1 && i >= at {
			rest = path[strings.Index(path, "]")+1:]
			moved[fmt.Sprintf("meshes[%d]%s", i+1, rest)] = p
			delete(s.pos, path)
		}
	}
	for path, p := range moved {
		s.pos[path] = p
	}
	s.Override(fmt.Sprintf("meshes[%d]", at), flag)
}

// FieldError returns an error about the field at path, at its position.
func (s *Scenario) FieldError(path, format string, args ...any) *FieldError {
	return &FieldError{Pos: s.Pos(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}
