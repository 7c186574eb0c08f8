// Package meshes defines what a mesh is to meshbench (the Mesh interface and
// the data it exchanges with the runner) and, in its sub-packages, the
// meshes themselves: none (the baseline) and meshbench (the own proxy).
//
// A mesh renders what to run (components, their configuration files, the
// address the client must call); it does not start processes or talk to the
// platform, which keeps every mesh testable as pure rendering and leaves
// process lifecycle, health checks and teardown in one place (the runner).
package meshes

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/scenarios"
)

// Mesh is a service mesh (or none) that meshbench can put between the
// client and the server.
type Mesh interface {
	// Name is the mesh's name in scenarios ("none", "meshbench").
	Name() string
	// Modes lists the data-plane modes the mesh supports.
	Modes() []scenarios.Mode
	// Deploy renders the components that enroll env's workloads in the mesh
	// in the given mode. It may write configuration files under env.Dir.
	Deploy(env Env, mode scenarios.Mode) (*Deployment, error)
}

// Availability is implemented by meshes that need something the host may
// lack (a binary): the runner reports them unavailable, with the reason.
type Availability interface {
	// Available returns nil, or why the mesh cannot run here.
	Available() error
}

// ModeAvailability is implemented by meshes whose availability differs by
// mode; the runner asks it instead of Availability.
type ModeAvailability interface {
	// AvailableIn returns nil, or why the mode cannot run here.
	AvailableIn(mode scenarios.Mode) error
}

// Tunable is implemented by meshes whose proxies take a runtime policy
// (a scenario's meshes[].proxy), and which can run as a variant of
// themselves under another row name (meshes[].as).
type Tunable interface {
	// Tuned returns the mesh named row, its proxies tuned by t (nil: as
	// they are), or why it cannot run so in mode.
	Tuned(row string, mode scenarios.Mode, t *scenarios.ProxyTuning) (Mesh, error)
}

// Versioned is implemented by meshes that can name the build of their data
// plane for the results.
type Versioned interface {
	// Version returns the data plane's build, e.g. "meshbench-proxy v0.1.0".
	Version() string
}

// Node is a place workloads run: a network namespace or a loopback address.
type Node struct {
	Name string
	// Addr is the node's address as other nodes (and the runner) reach it.
	Addr netip.Addr
	// Local is the address processes on the same node use to reach each
	// other: 127.0.0.1 in a namespace, Addr on the loopback platform.
	Local netip.Addr
}

// HostPort joins an address and a port.
func HostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

// Workload is an application process of the topology and where it runs.
type Workload struct {
	Name string
	Node Node
	// Port is the port the workload serves on (0 for a pure client).
	Port int
	// PayloadSize and ServiceTime are a server's echo knobs, for meshes
	// that start their own build of the workload (proxyless).
	PayloadSize int
	ServiceTime time.Duration
	// App, for a service's other replicas, is the service the workload is
	// a pod of (its Kubernetes app label and service account); empty for
	// the client and a service's first pod, whose name it is.
	App string
	// Host, for a pod on a node it shares with other services' pods
	// (topology services[].node), is that node, where the per-node proxy
	// serving them all runs; the pod keeps its own Node (its network, as a
	// pod's). Zero when the pod's Node is the whole of its node.
	Host Node
	// Slot is the pod's index among its Host's pods: which of its node
	// proxy's ports are the pod's (NodeOutbound, NodeInbound).
	Slot int
}

// Ports of a shared node's proxy for its pods, by slot: the outbound port
// a pod's app dials, and the inbound one a reference proxy takes the pod's
// requests on.
const (
	SharedOutboundBase = 16000
	SharedInboundBase  = SharedOutboundBase + scenarios.MaxServices*scenarios.MaxReplicas
)

// Shared says the pod is on a node it shares with other pods.
func (w Workload) Shared() bool { return w.Host.Name != "" }

// OwnSource says a shared node's proxy can tell the pod's connections
// by their source address: the pod has a network of its own (a
// namespace, a Kubernetes pod), whose address they come from. On the
// loopback platform every pod's come from 127.0.0.1.
func (w Workload) OwnSource() bool { return w.Shared() && w.Node.Local != w.Node.Addr }

// ProxyNode is the node whose per-node proxy serves the workload: its
// Host, or its own Node.
func (w Workload) ProxyNode() Node {
	if w.Shared() {
		return w.Host
	}
	return w.Node
}

// NodeOutbound is where the workload's per-node proxy takes its app's
// requests.
func NodeOutbound(w Workload) string {
	if w.Shared() {
		return HostPort(w.Host.Addr, SharedOutboundBase+w.Slot)
	}
	return HostPort(w.Node.Local, OutboundPort)
}

// NodeInbound is where the workload's per-node proxy takes requests for it
// from other nodes' proxies, where it has a port per pod (the reference
// proxies' inbound frontends, TCP tunnels).
func NodeInbound(w Workload) string {
	if w.Shared() {
		return HostPort(w.Host.Addr, SharedInboundBase+w.Slot)
	}
	return HostPort(w.Node.Addr, InboundPort)
}

// NodeApp is where the workload's per-node proxy hands it requests.
func NodeApp(w Workload) string {
	if w.Shared() {
		return HostPort(w.Node.Addr, w.Port)
	}
	return HostPort(w.Node.Local, w.Port)
}

// ViaNode dials the caller's per-node proxy.
func ViaNode(caller Workload, _ Service) string { return NodeOutbound(caller) }

// ProxyGroup is a proxy's place and the workloads it serves: a sidecar's
// workload, or a node's for a per-node proxy.
type ProxyGroup struct {
	Node      Node
	Workloads []Workload
	// Shared says the node is a shared one (its workloads' Host), whose
	// name is no workload's.
	Shared bool
}

// Owner names the group's proxy: its node's name when shared, else its
// one workload's.
func (g ProxyGroup) Owner() string {
	if g.Shared {
		return g.Node.Name
	}
	return g.Workloads[0].Name
}

// ProxyGroups are where a mesh puts its proxies in mode, in the order of
// their first workload: a sidecar beside every workload (whose Host is
// cleared in its group: the sidecar is in the pod's own network), or a
// proxy on every node, shared nodes' serving all of their pods.
func (e Env) ProxyGroups(mode scenarios.Mode) []ProxyGroup {
	var out []ProxyGroup
	index := map[string]int{}
	for _, w := range e.Workloads() {
		if mode != scenarios.PerNode {
			w.Host, w.Slot = Node{}, 0
		}
		n := w.ProxyNode()
		i, ok := index[n.Name]
		if !ok {
			i = len(out)
			index[n.Name] = i
			out = append(out, ProxyGroup{Node: n, Shared: w.Shared()})
		}
		out[i].Workloads = append(out[i].Workloads, w)
	}
	return out
}

// Account is the workload's service account, which its identity names:
// its service's, shared by every replica.
func (w Workload) Account() string {
	if w.App != "" {
		return w.App
	}
	return w.Name
}

// Authority is the workload's service's name and port, the Host its
// callers send.
func (w Workload) Authority() string { return w.Account() + ":" + strconv.Itoa(w.Port) }

// Service is a server workload and the services it calls for every request.
type Service struct {
	Workload
	// ClusterIP, when set, is the service's own address, which the
	// platform spreads over its pods (a Kubernetes Service's, balanced by
	// kube-proxy): its callers dial it where nothing intercepts them,
	// while proxies send to the pods themselves. Unset, they dial its
	// first pod (see Redirect.Service).
	ClusterIP netip.Addr
	Calls     []string
	// Selects are the services whose workloads this service's selector
	// also covers (a Kubernetes Service over their pods): its callers
	// spread its requests over them. Set by the conformance suite; only a
	// mesh with a control plane renders it (see Env.Alternatives).
	Selects []string
	// Replicas are the service's other pods, each on a node of its own
	// (App names the service): its callers spread its requests over Pods.
	// Workload is its first pod.
	Replicas []Workload
}

// Dial is where the service's callers connect where nothing intercepts
// them: its ClusterIP, or its first pod's address.
func (s Service) Dial() string {
	if s.ClusterIP.IsValid() {
		return HostPort(s.ClusterIP, s.Port)
	}
	return HostPort(s.Node.Addr, s.Port)
}

// Pods are the service's pods: its first, then its replicas.
func (s Service) Pods() []Workload { return append([]Workload{s.Workload}, s.Replicas...) }

// ReplicaCapable is implemented by meshes that can spread a service's
// requests over its replicas: SupportsReplicas says why not in mode.
type ReplicaCapable interface {
	SupportsReplicas(mode scenarios.Mode) error
}

// SupportsReplicas says why m cannot run a topology with replicated
// services in mode, if it cannot.
func SupportsReplicas(m Mesh, mode scenarios.Mode) error {
	rc, ok := m.(ReplicaCapable)
	if !ok {
		return fmt.Errorf("mesh %s does not spread requests over replicas yet", m.Name())
	}
	return rc.SupportsReplicas(mode)
}

// Env is what a mesh needs to render a deployment.
type Env struct {
	Client Workload
	// ControlPlane is the node of the mesh's control plane, if it has
	// one: a node of its own (scenarios.ControlPlaneNode), which the
	// runner adds when a row's mesh has a control plane. Unset, the
	// control plane runs on the client's node.
	ControlPlane Node
	// Services are the topology's services, entry first: the client calls
	// Services[0], and each service calls the ones it lists.
	Services []Service
	// Dir is a scratch directory for this deployment's files.
	Dir string
	// Transparent says the platform can redirect a node's traffic to a
	// proxy (Deployment.Redirects); otherwise apps dial proxies explicitly.
	Transparent bool
	// Alternatives are, per service, the services policy may send its
	// requests to instead (a TrafficSplit's backends, the services it
	// selects): its callers must be able to reach them.
	Alternatives map[string][]string
	// DenyByDefault turns access control on everywhere: no call is
	// allowed that no TrafficTarget allows (the conformance suite's
	// traffic-access needs it).
	DenyByDefault bool
	// Mutate, test-only, makes the mesh's control plane break one
	// translation on purpose (the conformance suite's check of itself).
	Mutate string
	// Protocol is the load's protocol (scenarios.Protocols), which the
	// data plane must carry end to end.
	Protocol string
}

// ControlPlaneNode is where the mesh's control plane runs: its own node,
// or the client's.
func (e Env) ControlPlaneNode() Node {
	if e.ControlPlane.Name != "" {
		return e.ControlPlane
	}
	return e.Client.Node
}

// Entry is the service the client calls.
func (e Env) Entry() Service { return e.Services[0] }

// Callees are the services w calls: the entry for the client, the listed
// ones for a service.
func (e Env) Callees(w Workload) []Service {
	if w.Name == e.Client.Name {
		return e.Services[:1]
	}
	var out []Service
	for _, s := range e.Services {
		if s.Name == w.Account() {
			for _, c := range s.Calls {
				out = append(out, e.service(c))
			}
		}
	}
	return out
}

// Reachable are the services w's requests may go to: its callees, and
// the services policy may send their requests to instead.
func (e Env) Reachable(w Workload) []Service {
	// A copy: Callees may return a slice of e.Services.
	out := slices.Clone(e.Callees(w))
	for _, c := range out {
		for _, alt := range e.Alternatives[c.Name] {
			if !slices.ContainsFunc(out, func(s Service) bool { return s.Name == alt }) {
				out = append(out, e.service(alt))
			}
		}
	}
	return out
}

// Reachers are the workloads whose requests may reach the service named
// name: its callers, and the callers of the services policy may send to it
// instead.
func (e Env) Reachers(name string) []Workload {
	out := e.Callers(name)
	for root, alts := range e.Alternatives {
		if !slices.Contains(alts, name) {
			continue
		}
		for _, w := range e.Callers(root) {
			if !slices.ContainsFunc(out, func(o Workload) bool { return o.Name == w.Name }) {
				out = append(out, w)
			}
		}
	}
	slices.SortFunc(out, func(a, b Workload) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Callers are the workloads that call the service named name.
func (e Env) Callers(name string) []Workload {
	var out []Workload
	if e.Entry().Name == name {
		out = append(out, e.Client)
	}
	for _, s := range e.Services {
		for _, c := range s.Calls {
			if c == name {
				out = append(out, s.Pods()...)
			}
		}
	}
	return out
}

// Workloads are the client and every service's pods, client first.
func (e Env) Workloads() []Workload {
	out := []Workload{e.Client}
	for _, s := range e.Services {
		out = append(out, s.Pods()...)
	}
	return out
}

// ServiceOf is the service w is a pod of, if it is one's.
func (e Env) ServiceOf(w Workload) (Service, bool) {
	for _, s := range e.Services {
		if s.Name == w.Account() {
			return s, true
		}
	}
	return Service{}, false
}

func (e Env) service(name string) Service {
	for _, s := range e.Services {
		if s.Name == name {
			return s
		}
	}
	panic(fmt.Sprintf("meshes: topology has no service %q", name))
}

// Deployment is a rendered mesh: processes to start and where the client
// and the services send their requests.
type Deployment struct {
	// ControlPlane, when set, starts first (before the services, which a
	// proxyless mode configures from it) and stops last.
	ControlPlane *Component
	Components   []Component
	// Target is what the client calls.
	Target Target
	// Apps say how each service (by name) is enrolled: extra arguments and
	// how it reaches the services it calls. A service missing here runs
	// plain and dials its callees directly.
	Apps map[string]App
	// Redirects are the transparent-interception rules to install on nodes
	// before the components start (only when Env.Transparent).
	Redirects []Redirect
	// MTLS says the hops between the deployment's proxies (or libraries)
	// are mutual TLS.
	MTLS bool
	// ApplyPolicies, when set, puts policy objects in force (all of the
	// policy: what it is not given is no longer in force). The runner calls
	// it before the load and at each change the scenario schedules.
	ApplyPolicies func(ctx context.Context, objs []scenarios.Policy) error
	// SimulatedClients, for a mesh with a control plane, is the process
	// that connects simulated xDS clients to it for the control-plane
	// benchmark: the meshbench binary's xds-clients role, to which the
	// runner adds --count and --prefix. Their configuration is that of
	// one of the deployment's own clients.
	SimulatedClients *Component
	// Changes, for a mesh with a control plane, makes one synthetic change
	// of a kind (scenarios.ControlPlaneChanges) to every client's
	// configuration; Propagation reports how far the latest reached.
	Change      func(ctx context.Context, kind string) error
	Propagation func(ctx context.Context) (Propagation, error)
	// ProxyMetrics are where each of the deployment's proxies (by name)
	// serves its Prometheus metrics, for a game day's prometheus probes.
	ProxyMetrics map[string]string
	// Profiles are where each of the deployment's proxies that are Go
	// programs (by name) serves Go's profiles (the base URL of
	// net/http/pprof's handlers, ending in /debug/pprof/), for run
	// --profile.
	Profiles map[string]string
	// TrafficMetrics, when set, reads what the mesh's data plane reports
	// of a service's inbound traffic so far (SMI Traffic Metrics).
	TrafficMetrics func(ctx context.Context, service string) (TrafficMetrics, error)
}

// TrafficMetrics is a service's inbound traffic as the mesh reports it.
type TrafficMetrics struct {
	// Success and Failure count requests (failure: 5xx or no response).
	Success, Failure int64
	// P50Ms, P90Ms and P99Ms are the response latency quantiles, in ms.
	P50Ms, P90Ms, P99Ms float64
	// Window is the time the counts cover.
	Window time.Duration
	// From counts requests (success and failure) by calling workload.
	From map[string]int64
}

// Propagation is how far a control plane's latest change has reached.
type Propagation struct {
	// Version is the configuration version of the latest change.
	Version string
	// Connected counts the control plane's connected clients; Current,
	// those running the configuration in force for them; Changed, those
	// whose configuration the latest change touched.
	Connected, Current, Changed int
	// AckedAfter are the Changed clients' times from the change to their
	// acknowledgement of it, ascending (only those that acknowledged).
	AckedAfter []time.Duration
}

// ControlPlaneMesh is implemented by meshes whose deployments can run the
// control-plane benchmark (they set SimulatedClients, Change and
// Propagation).
type ControlPlaneMesh interface {
	// BenchControlPlane returns nil, or why mode's deployments cannot.
	BenchControlPlane(mode scenarios.Mode) error
}

// ProtocolCapable is implemented by meshes whose data planes carry load
// protocols other than HTTP/1.1.
type ProtocolCapable interface {
	// Carries returns nil, or why mode's data plane cannot carry protocol
	// end to end.
	Carries(protocol string, mode scenarios.Mode) error
}

// Carries returns nil when m's data plane in mode carries protocol, or
// why not: a ProtocolCapable mesh says; any other carries http only.
func Carries(m Mesh, protocol string, mode scenarios.Mode) error {
	if protocol == "" {
		protocol = scenarios.ProtocolHTTP
	}
	if pc, ok := m.(ProtocolCapable); ok {
		return pc.Carries(protocol, mode)
	}
	if protocol != scenarios.ProtocolHTTP {
		return fmt.Errorf("mesh %s carries http only", m.Name())
	}
	return nil
}

// PolicyCapable is implemented by meshes that can express traffic policy.
type PolicyCapable interface {
	// SupportsPolicies returns nil, or why the mesh cannot express these
	// policy objects in mode.
	SupportsPolicies(objs []scenarios.Policy, mode scenarios.Mode) error
}

// App is how a mesh enrolls one service workload.
type App struct {
	// Args are extra arguments for the workload, such as the proxyless
	// mode's xDS bundle.
	Args []string
	// Calls say how the service reaches each service it calls, in the
	// order of its calls.
	Calls []Call
	// Ready, when set, replaces the runner's readiness probe (a plaintext
	// GET of the workload's health path on its port).
	Ready *Probe
	// HTTPFaults, when set, is where the workload takes HTTPChaos rules
	// and applies them itself (Component.HTTPFaults): a proxyless
	// library terminates mTLS in the application, where no interposer
	// sees plain HTTP.
	HTTPFaults string
}

// Call is how a workload reaches one service it calls.
type Call struct {
	// Authority is the callee's name:port, sent as the Host.
	Authority string
	// Dial is the address to connect to: the callee itself, or a local
	// proxy. Empty means the workload's linked mesh library routes it
	// (proxyless).
	Dial string
}

// Arg renders the call as the workload's --call flag value.
func (c Call) Arg() string {
	if c.Dial == "" {
		return c.Authority
	}
	return c.Authority + "=" + c.Dial
}

// CallsVia are the calls of every service, each dialing dial(caller,
// callee) (an empty result lets a linked library route the call), by
// service name; and by pod name for a replica whose calls dial elsewhere
// than its service's first pod's.
func CallsVia(env Env, dial func(caller Workload, callee Service) string) map[string]App {
	apps := map[string]App{}
	callsOf := func(w Workload) App {
		var app App
		for _, c := range env.Callees(w) {
			app.Calls = append(app.Calls, Call{Authority: c.Authority(), Dial: dial(w, c)})
		}
		return app
	}
	for _, s := range env.Services {
		apps[s.Name] = callsOf(s.Workload)
		// A replica that dials elsewhere (its own proxy's port on a
		// shared node, or its own address) has an entry of its own.
		for _, pod := range s.Replicas {
			if app := callsOf(pod); !slices.Equal(app.Calls, apps[s.Name].Calls) {
				apps[pod.Name] = app
			}
		}
	}
	return apps
}

// Direct dials the callee's own address (no proxy, or one that intercepts
// transparently): its ClusterIP where it has one.
func Direct(_ Workload, callee Service) string { return callee.Dial() }

// ViaOutbound dials the caller node's outbound proxy port.
func ViaOutbound(caller Workload, _ Service) string { return HostPort(caller.Node.Local, OutboundPort) }

// Target is where, and as whom, the client sends requests.
type Target struct {
	// URL is the URL the client dials.
	URL string
	// Host, when set, is the Host (authority) header to send.
	Host string
	// ClientArgs are extra arguments for the client workload, such as the
	// proxyless mode's xDS bundle.
	ClientArgs []string
}

// Redirect sends a node's TCP traffic to a local proxy port, as a sidecar
// mesh's init container does with iptables; or, with Service set, spreads
// the connections the node opens to a Service's address over its pods, as
// kube-proxy does.
type Redirect struct {
	// Service and Endpoints, when set, make the redirect a Service's load
	// balancing: connections to Service:Port are sent to one of
	// Endpoints (at Port) at random, per connection. Installed after the
	// mesh's redirects, it sees only connections no proxy intercepted.
	Service   netip.Addr
	Endpoints []netip.Addr
	Node      string
	// Outbound captures connections the node's processes open to other
	// nodes, except the proxy's own: those carrying ExcludeMark (SO_MARK)
	// or opened by ExcludeUID. Otherwise inbound connections to Port are
	// captured.
	Outbound    bool
	Port        int
	ToPort      int
	ExcludeMark int
	ExcludeUID  int
}

// Rules renders the redirect as iptables nat rules (arguments after
// "-A"), in the order they are appended, the way Istio's init container
// writes them: outbound TCP to the proxy except the proxy's own (marked or
// by its user) and loopback traffic; inbound TCP to Port on eth0 to the
// proxy's inbound port. comment tags every rule (run ids, for cleanup).
func (r Redirect) Rules(comment string) [][]string {
	c := []string{"-m", "comment", "--comment", comment}
	if r.Service.IsValid() {
		// kube-proxy's iptables mode: endpoint i of n is taken with
		// probability 1/(n-i) by the connections the ones before it did
		// not take, so each gets 1/n.
		var rules [][]string
		port := strconv.Itoa(r.Port)
		for i, ep := range r.Endpoints {
			rule := []string{"OUTPUT", "-p", "tcp", "-d", r.Service.String() + "/32", "--dport", port}
			if rest := len(r.Endpoints) - i; rest > 1 {
				rule = append(rule, "-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(1/float64(rest), 'f', 5, 64))
			}
			rules = append(rules, append(append(rule, c...), "-j", "DNAT", "--to-destination", HostPort(ep, r.Port)))
		}
		return rules
	}
	to := strconv.Itoa(r.ToPort)
	if r.Outbound {
		var rules [][]string
		if r.ExcludeMark != 0 {
			rules = append(rules, append([]string{"OUTPUT", "-p", "tcp", "-m", "mark", "--mark", strconv.Itoa(r.ExcludeMark), "-j", "RETURN"}, c...))
		}
		if r.ExcludeUID != 0 {
			rules = append(rules, append([]string{"OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(r.ExcludeUID), "-j", "RETURN"}, c...))
		}
		return append(rules,
			append([]string{"OUTPUT", "-p", "tcp", "-o", "lo", "-j", "RETURN"}, c...),
			append([]string{"OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", to}, c...),
		)
	}
	return [][]string{
		append([]string{"PREROUTING", "-p", "tcp", "-i", "eth0", "--dport", strconv.Itoa(r.Port), "-j", "REDIRECT", "--to-ports", to}, c...),
	}
}

// Component is one process a mesh needs, such as a proxy.
type Component struct {
	// Name is unique within a deployment, e.g. "client-sidecar".
	Name string
	// Class groups components in resource reports ("proxy").
	Class string
	// Node is the name of the node the process runs on.
	Node string
	// Command is an external executable; empty means the meshbench binary
	// itself, run with Args (e.g. "proxy --config ..."), and ProxyCommand
	// the proxy-only build, which takes the same Args.
	Command string
	Args    []string
	// Ready is polled until it succeeds before load starts.
	Ready Probe
	// Status, when set, is a URL whose JSON the runner keeps in the
	// trial's logs when the load ends (a control plane's view of what its
	// clients acknowledged and rejected).
	Status string
	// HTTPFaults, when set, is the address of the process's own
	// HTTPChaos rule API (as `meshbench workload http-faults` serves it):
	// the platform puts a pod's HTTP faults there instead of splicing an
	// interposer in front of it.
	HTTPFaults string
}

// ProxyCommand, as a Component's Command, is meshbench-proxy: the proxy
// role alone, which a platform runs where it has it (beside the meshbench
// binary) and otherwise runs as the meshbench binary, whose proxy
// subcommand takes the same arguments. It spares a proxy process the
// memory of everything else meshbench links.
const ProxyCommand = "meshbench-proxy"

// Probe is a readiness check run from the runner's side.
type Probe struct {
	// HTTPGet is a URL that must answer 200.
	HTTPGet string
	// TCP is an address that must accept a connection.
	TCP string
}

// Supports reports whether m supports mode, and if not an error naming the
// modes it does support.
func Supports(m Mesh, mode scenarios.Mode) error {
	for _, s := range m.Modes() {
		if s == mode {
			return nil
		}
	}
	return fmt.Errorf("mesh %q does not support mode %q (supported: %v)", m.Name(), mode, m.Modes())
}
