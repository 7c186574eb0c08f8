// Package meshbench deploys meshbench's own data plane (package proxy) as a
// mesh, in three modes: a sidecar proxy per workload, one shared proxy per
// node (ztunnel-style, node proxies talking HTTP/2 over one mutual-TLS
// connection per peer node), and proxyless (the workloads link
// proxy/proxyless). Every mode is configured with xDS resources (package
// proxy/xds), and every workload gets a SPIFFE identity from a
// per-deployment CA, so that all traffic between mesh hops is mutual TLS.
package meshbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	smimetrics "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/metrics/v1alpha1"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// Ports and identity settings shared with the reference data planes (so
// every mesh is measured on the same ones), and the own mesh's extra ports.
const (
	AdminPort    = meshes.AdminPort
	OutboundPort = meshes.OutboundPort
	InboundPort  = meshes.InboundPort
	TunnelPort   = 15008 // per-node: HTTP/2 between node proxies (HBONE's port)
	// L4OutboundBase is the first of an L4 node proxy's outbound ports: one
	// per pod and callee (see l4Outbound).
	L4OutboundBase = 17000
	ProxylessPort  = 8443 // proxyless: the server workload's own mTLS port
	// HTTPFaultsPort is a proxyless server workload's HTTPChaos rule API
	// (its fault filter's).
	HTTPFaultsPort = 15020
	// XDSPort and ControlPlaneAdminPort are the control plane's (Istio's
	// istiod serves mTLS xDS on 15012 and monitoring on 15014).
	XDSPort               = 15012
	ControlPlaneAdminPort = 15014
)

// ProxyMark is the SO_MARK of the sidecar's own upstream traffic, which
// transparent interception lets pass (Istio's 1337).
const ProxyMark = 1337

// Identity settings.
const (
	TrustDomain     = meshes.TrustDomain
	Namespace       = meshes.Namespace
	SystemNamespace = "meshbench-system"
	CertTTL         = meshes.CertTTL
	// SourceHeader carries the source workload's identity between node
	// proxies, which authenticate each other with their own identities.
	SourceHeader = "X-Meshbench-Source"
)

const connectTimeout = 2 * time.Second

type mesh struct {
	version string
	// name is the mesh's row name ("meshbench", or a variant's), and
	// tuning its proxies' runtime policy (nil: the proxy's default).
	name   string
	tuning *scenarios.ProxyTuning
}

var (
	_ meshes.Mesh            = (*mesh)(nil)
	_ meshes.Versioned       = (*mesh)(nil)
	_ meshes.PolicyCapable   = (*mesh)(nil)
	_ meshes.ProtocolCapable = (*mesh)(nil)
	_ meshes.Tunable         = (*mesh)(nil)
)

// New returns the own mesh; version names the proxy build in results.
func New(version string) meshes.Mesh { return &mesh{version: version, name: Name} }

// Name is the own mesh's name in scenarios.
const Name = "meshbench"

func (m *mesh) Name() string { return m.name }

// Tuned: the sidecar and per-node proxies take a GC policy; proxyless
// modes have no proxy process (the library runs in the workload, whose
// runtime is the application's).
func (m *mesh) Tuned(row string, mode scenarios.Mode, t *scenarios.ProxyTuning) (meshes.Mesh, error) {
	if t != nil && mode != scenarios.Sidecar && mode != scenarios.PerNode {
		return nil, fmt.Errorf("proxy: mode %s has no proxy process to tune (sidecar and per-node have)", mode)
	}
	if t != nil && t.Layer != "" && mode != scenarios.PerNode {
		return nil, fmt.Errorf("proxy.layer: mode %s has no node proxy (per-node has)", mode)
	}
	return &mesh{version: m.version, name: row, tuning: t}, nil
}

// SupportsReplicas: the proxies and the library spread a replicated
// service's requests over its pods, retrying a failed connection on
// another and ejecting pods that keep failing; grpc-go's own xDS client
// (proxyless-grpc) is given one endpoint per service in this build.
func (*mesh) SupportsReplicas(mode scenarios.Mode) error {
	if mode == scenarios.ProxylessGRPC {
		return fmt.Errorf("mode %s does not spread requests over replicas yet", mode)
	}
	return nil
}

func (*mesh) Modes() []scenarios.Mode {
	return []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode, scenarios.Proxyless, scenarios.ProxylessGRPC}
}

func (m *mesh) Version() string {
	how := "(mTLS)"
	if m.tuning != nil && m.tuning.Layer == scenarios.LayerL4 {
		how = "(mTLS, L4 node proxies: HBONE)"
		if m.tuning.Waypoint {
			how = "(mTLS, L4 node proxies: HBONE, a waypoint per service)"
		}
	}
	if m.tuning != nil && m.tuning.Binary != "" {
		return "meshbench-proxy as built in " + m.tuning.Binary + " " + how
	}
	return "meshbench-proxy " + m.version + " " + how
}

// Deploy renders the mode's components and configuration.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	ca, err := identity.NewCA(TrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	r := &renderer{env: env, ca: ca, mode: string(mode), tuning: m.tuning, model: &controlplane.Model{Nodes: map[string]string{}, DenyByDefault: env.DenyByDefault}}
	var dep *meshes.Deployment
	switch mode {
	case scenarios.PerNode:
		if r.l4() {
			dep, err = r.perNodeL4()
		} else {
			dep, err = r.perNode()
		}
	case scenarios.Proxyless:
		dep, err = r.proxyless()
	case scenarios.ProxylessGRPC:
		dep, err = r.proxylessGRPC()
	default:
		dep, err = r.sidecar()
	}
	if err != nil {
		return nil, err
	}
	if len(r.model.Nodes) > 0 {
		r.model.Accounts = map[string]string{}
		for _, w := range env.Workloads() {
			r.model.Accounts[w.Account()] = workloadID(w) // replicas share theirs
		}
		if dep.ControlPlane, err = r.controlPlane(); err != nil {
			return nil, err
		}
		admin := strings.TrimSuffix(dep.ControlPlane.Status, "/status")
		dep.ApplyPolicies = func(ctx context.Context, objs []scenarios.Policy) error { return putPolicies(ctx, admin, objs) }
		if dep.SimulatedClients, err = r.simulatedClients(); err != nil {
			return nil, err
		}
		dep.Change = func(ctx context.Context, kind string) error { return benchChange(ctx, admin, kind) }
		dep.Propagation = func(ctx context.Context) (meshes.Propagation, error) { return propagation(ctx, admin) }
		dep.ProxyMetrics = r.model.Metrics
		dep.Profiles = r.profiles
		if len(r.model.Metrics) > 0 && !r.tcp() && (!r.l4() || r.waypoints()) {
			// An L4 node proxy sees streams, not requests: it has no
			// per-request traffic to report (its waypoints have).
			dep.TrafficMetrics = func(ctx context.Context, svc string) (meshes.TrafficMetrics, error) {
				return trafficMetrics(ctx, admin, svc)
			}
		}
	}
	return dep, nil
}

// Carries: the proxies carry HTTP/1.1, HTTP/2 (h2c from the apps, h2
// between proxies and to the apps), gRPC over it, and TCP (tcp_proxy
// listeners, mutual TLS between the proxies); the proxyless library is
// an HTTP/1.1 client and server (a net/http RoundTripper and Handler);
// proxyless-grpc is grpc-go, gRPC only.
func (m *mesh) Carries(protocol string, mode scenarios.Mode) error {
	switch {
	case mode == scenarios.Proxyless && protocol != scenarios.ProtocolHTTP:
		return fmt.Errorf("the proxyless library is an HTTP/1.1 client and server (net/http); it carries no %s", protocol)
	case mode == scenarios.ProxylessGRPC && protocol != scenarios.ProtocolGRPC:
		return fmt.Errorf("proxyless-grpc is grpc-go's own xDS client and server: it carries grpc only, not %s", protocol)
	}
	return nil
}

// BenchControlPlane: every mode takes its configuration from the control
// plane; the benchmark's simulated clients and changes are the own
// proxy's resources, so proxyless-grpc is left to the other modes.
func (m *mesh) BenchControlPlane(mode scenarios.Mode) error {
	if mode == scenarios.ProxylessGRPC {
		return errors.New("the control-plane benchmark changes the own proxy's resources; run it with sidecar, per-node or proxyless")
	}
	return nil
}

// SupportsPolicies: the control plane serves the sidecars, node proxies
// and proxyless libraries what it can compile, in every mode but
// proxyless-grpc, whose grpc-go resources it does not compile policy into
// yet.
func (m *mesh) SupportsPolicies(objs []scenarios.Policy, mode scenarios.Mode) error {
	if l4 := mode == scenarios.PerNode && m.tuning != nil && m.tuning.Layer == scenarios.LayerL4; l4 && !m.tuning.Waypoint && len(objs) > 0 {
		return errors.New("the L4 per-node proxy (proxy.layer: l4) carries connections, not requests: L7 policy needs its waypoints (proxy.waypoint: true) or layer l7")
	} else if l4 && hasKind(objs, "TrafficSplit") && hasKind(objs, "TrafficTarget") {
		// A split's backend is reached from the split service's waypoint,
		// not through its own, where its TrafficTarget is in force.
		return errors.New("with waypoints, a TrafficTarget beside a TrafficSplit is not enforced on the split's backends (they are reached from the split service's waypoint): run them in separate scenarios, or with layer l7")
	}
	if mode == scenarios.ProxylessGRPC {
		return errors.New("the control plane does not compile policy into grpc-go's xDS resources yet (proxyless-grpc serves every call of its callers, with RBAC from the topology)")
	}
	raw, err := policyJSON(objs)
	if err != nil {
		return err
	}
	return controlplane.Check(raw)
}

func policyJSON(objs []scenarios.Policy) ([]json.RawMessage, error) {
	raw := []json.RawMessage{}
	for _, p := range objs {
		b, err := json.Marshal(p.Object)
		if err != nil {
			return nil, err
		}
		raw = append(raw, b)
	}
	return raw, nil
}

// putPolicies makes objs the policy the control plane at admin serves.
func putPolicies(ctx context.Context, admin string, objs []scenarios.Policy) error {
	raw, err := policyJSON(objs)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(raw)
	if _, err := adminCall(ctx, http.MethodPut, admin+"/policies", body); err != nil {
		return fmt.Errorf("control plane refused the policies: %w", err)
	}
	return nil
}

type renderer struct {
	env  meshes.Env
	ca   *identity.CA
	mode string
	// model is what the control plane serves: each proxy's bundle.
	model *controlplane.Model
	// profiles are the proxies' Go profile endpoints, by name.
	profiles map[string]string
	// tuning is the proxies' runtime policy (nil: their default).
	tuning *scenarios.ProxyTuning
}

// hasKind says whether objs hold an object of kind.
func hasKind(objs []scenarios.Policy, kind string) bool {
	return slices.ContainsFunc(objs, func(p scenarios.Policy) bool { return p.Kind() == kind })
}

// l4 says the per-node proxies work at L4 (proxy.layer: l4).
func (r *renderer) l4() bool { return r.tuning != nil && r.tuning.Layer == scenarios.LayerL4 }

// service returns the model's entry for svc, creating it.
func (r *renderer) service(svc meshes.Service) *controlplane.Service {
	for i := range r.model.Services {
		if r.model.Services[i].Name == svc.Name {
			return &r.model.Services[i]
		}
	}
	r.model.Services = append(r.model.Services, controlplane.Service{Name: svc.Name, Identity: workloadID(svc.Workload),
		ServiceAccount: svc.Name, Authority: svc.Authority(), Clusters: map[string]string{}, Selects: svc.Selects})
	return &r.model.Services[len(r.model.Services)-1]
}

// reaches records that node's outbound listener routes to svc with
// cluster: where policy changes how it does.
func (r *renderer) reaches(svc meshes.Service, node, listener, cluster string, byAuthority bool) {
	s := r.service(svc)
	s.Clusters[node] = cluster
	s.Routes = append(s.Routes, controlplane.RouteRef{Node: node, Listener: listener, VirtualHost: svc.Name, RewriteAuthority: byAuthority})
}

// controlPlaneID is the control plane's SPIFFE ID.
var controlPlaneID = identity.SPIFFEID(TrustDomain, SystemNamespace, "control-plane")

// xdsAddr is where the control plane serves xDS: on its own node (on
// Kubernetes, a Deployment's pod), or the client's.
func (r *renderer) xdsAddr() string { return meshes.HostPort(r.env.ControlPlaneNode().Addr, XDSPort) }

// controlPlane writes the model and renders the control plane that serves
// it, over mutual TLS with its own identity from the mesh's CA.
func (r *renderer) controlPlane() (*meshes.Component, error) {
	// Valid for its address too: grpc-go's xDS client checks the address
	// it dialed (proxyless-grpc).
	node := r.env.ControlPlaneNode()
	id, err := r.issue("control-plane", controlPlaneID, node.Addr.AsSlice())
	if err != nil {
		return nil, err
	}
	path := filepath.Join(r.env.Dir, "control-plane.model.json")
	if err := controlplane.WriteModel(path, r.model); err != nil {
		return nil, err
	}
	admin := meshes.HostPort(node.Addr, ControlPlaneAdminPort)
	return &meshes.Component{
		Name:  "control-plane",
		Class: "control-plane", // results.ClassControlPlane
		Node:  node.Name,
		Args: append([]string{"control-plane", "--model", path, "--listen", r.xdsAddr(), "--admin", admin,
			"--cert", id.Cert, "--key", id.Key, "--ca", id.CA}, mutateArgs(r.env.Mutate)...),
		Ready:  meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
		Status: "http://" + admin + "/status",
	}, nil
}

// simulatedClients renders the control-plane benchmark's simulated
// clients: replicas of the first node of the model (by name), on the
// control plane's node (elsewhere a sidecar's redirect would take their
// connections), over mutual TLS with an identity of their own.
func (r *renderer) simulatedClients() (*meshes.Component, error) {
	id, err := r.issue("xds-clients", identity.SPIFFEID(TrustDomain, SystemNamespace, "xds-clients"))
	if err != nil {
		return nil, err
	}
	return &meshes.Component{
		Name:  "xds-clients",
		Class: "loadgen", // results.ClassLoadGen: they drive the control plane
		Node:  r.env.ControlPlaneNode().Name,
		Args: []string{"xds-clients", "--ads", r.xdsAddr(), "--replica-of", slices.Sorted(maps.Keys(r.model.Nodes))[0],
			"--ads-cert", id.Cert, "--ads-key", id.Key, "--ads-ca", id.CA, "--ads-peer-id", controlPlaneID},
	}, nil
}

// benchChange asks the control plane at admin for a synthetic change.
func benchChange(ctx context.Context, admin, kind string) error {
	_, err := adminCall(ctx, http.MethodPost, admin+"/bench/change?kind="+url.QueryEscape(kind), nil)
	return err
}

// propagation asks the control plane at admin how far its latest change
// reached.
func propagation(ctx context.Context, admin string) (meshes.Propagation, error) {
	body, err := adminCall(ctx, http.MethodGet, admin+"/propagation", nil)
	if err != nil {
		return meshes.Propagation{}, err
	}
	var p controlplane.Propagation
	if err := json.Unmarshal(body, &p); err != nil {
		return meshes.Propagation{}, fmt.Errorf("control plane propagation: %w", err)
	}
	out := meshes.Propagation{Version: p.Version, Connected: p.Connected, Current: p.Current, Changed: p.Changed}
	for _, ms := range p.AckedAfterMs {
		out.AckedAfter = append(out.AckedAfter, time.Duration(ms*float64(time.Millisecond)))
	}
	return out, nil
}

// trafficMetrics reads svc's SMI TrafficMetrics, and its edges, from the
// control plane at admin.
func trafficMetrics(ctx context.Context, admin, svc string) (meshes.TrafficMetrics, error) {
	base := admin + "/apis/metrics.smi-spec.io/v1alpha1/namespaces/" + controlplane.MetricsNamespace + "/deployments/" + url.PathEscape(svc)
	var tm smimetrics.TrafficMetrics
	var edges smimetrics.TrafficMetricsList
	for u, v := range map[string]any{base: &tm, base + "/edges": &edges} {
		body, err := adminCall(ctx, http.MethodGet, u, nil)
		if err != nil {
			return meshes.TrafficMetrics{}, err
		}
		if err := json.Unmarshal(body, v); err != nil {
			return meshes.TrafficMetrics{}, fmt.Errorf("traffic metrics of %s: %w", svc, err)
		}
	}
	out := meshes.TrafficMetrics{From: map[string]int64{}}
	if tm.Interval != nil {
		out.Window = tm.Window.Duration
	}
	for _, m := range tm.Metrics {
		v := m.Value.AsApproximateFloat64()
		switch m.Name {
		case "success_count":
			out.Success = int64(v)
		case "failure_count":
			out.Failure = int64(v)
		case "p50_response_latency":
			out.P50Ms = v
		case "p90_response_latency":
			out.P90Ms = v
		case "p99_response_latency":
			out.P99Ms = v
		}
	}
	for _, item := range edges.Items {
		if item.Edge == nil || item.Edge.Resource == nil {
			continue
		}
		for _, m := range item.Metrics {
			if m.Name == "success_count" || m.Name == "failure_count" {
				out.From[item.Edge.Resource.Name] += int64(m.Value.AsApproximateFloat64())
			}
		}
	}
	return out, nil
}

// adminTimeout bounds one call of the control plane's admin API.
const adminTimeout = 10 * time.Second

// adminCall calls the control plane's admin API (with a JSON body, when
// one is given) and returns the answer, or an error with the control
// plane's reason.
// adminClient makes the control plane's admin calls. It keeps a
// connection for the frequent ones (propagation polls) but closes it
// after 5 s idle: a connection from the host to a node idle for about 15 s
// was reset under the next call (a policy change 15 s after the last,
// gameday-canary's rollback), and Go does not retry a PUT.
var adminClient = &http.Client{Transport: &http.Transport{Proxy: nil, IdleConnTimeout: 5 * time.Second}}

func adminCall(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	// A control plane that stops answering must not hang the run.
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control plane: %s %s: %s", method, u, strings.TrimSpace(string(answer)))
	}
	return answer, nil
}

func mutateArgs(m string) []string {
	if m == "" {
		return nil
	}
	return []string{"--mutate", m}
}

// workloadID is a workload's SPIFFE ID: its service account is its name.
func workloadID(w meshes.Workload) string {
	return identity.SPIFFEID(TrustDomain, Namespace, w.Account())
}

// nodeID is a node proxy's SPIFFE ID.
func nodeID(n meshes.Node) string {
	return identity.SPIFFEID(TrustDomain, SystemNamespace, "node-"+n.Name)
}

// issue issues name the identity id; the returned files accept no peer
// until a copy names them (withPeers).
func (r *renderer) issue(name, id string, ips ...net.IP) (xds.TLSFiles, error) {
	f := identity.FilesIn(r.env.Dir, name)
	if err := r.ca.IssueFiles(f, id, CertTTL, ips...); err != nil {
		return xds.TLSFiles{}, fmt.Errorf("identity for %s: %w", name, err)
	}
	return xds.TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}, nil
}

// withPeers is t accepting exactly peers.
func withPeers(t xds.TLSFiles, peers ...string) *xds.TLSFiles {
	t.PeerIDs = peers
	return &t
}

// callerIDs are the SPIFFE IDs of the workloads whose requests may reach
// svc (its callers, and, through policy, its roots' callers).
func (r *renderer) callerIDs(svc meshes.Service) []string {
	return workloadIDs(r.env.Reachers(svc.Name))
}

// workloadIDs are ws's identities, each once (replicas share theirs).
func workloadIDs(ws []meshes.Workload) []string {
	var ids []string
	for _, w := range ws {
		if id := workloadID(w); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func outboundCluster(callee meshes.Service) string {
	return "outbound|" + strconv.Itoa(callee.Port) + "||" + callee.Name
}

// domains are the Host values that name a service.
func domains(svc meshes.Service) []string { return []string{svc.Name, svc.Authority()} }

// target is where the client sends requests in the proxy modes: its node's
// outbound listener, naming the entry service by its authority.
func (r *renderer) target() meshes.Target {
	return meshes.Target{
		URL:  "http://" + meshes.HostPort(r.env.Client.Node.Local, OutboundPort) + "/",
		Host: r.env.Entry().Authority(),
	}
}

// writeBundle writes the bundle for the process that will read it, after
// reading it back as that process will, so that a rendering bug fails the
// deployment with its reason rather than as a process that exits at start.
func (r *renderer) writeBundle(name string, b *xds.Bundle) (string, error) {
	data, err := b.Marshal()
	if err != nil {
		return "", err
	}
	decoded, err := xds.Decode(data)
	if err == nil {
		_, err = xds.Translate(decoded, name, "")
	}
	if err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	path := filepath.Join(r.env.Dir, name+".xds.json")
	return path, os.WriteFile(path, data, 0o644)
}

// libraryArgs writes a proxyless workload's bundle as its node's base
// configuration at the control plane and returns the workload's flags to
// take it from there, over mutual TLS with its own identity (id).
func (r *renderer) libraryArgs(node string, b *xds.Bundle, id xds.TLSFiles) ([]string, error) {
	path, err := r.writeBundle(node, b)
	if err != nil {
		return nil, err
	}
	r.model.Nodes[node] = filepath.Base(path)
	return []string{"--ads", r.xdsAddr(), "--node", node,
		"--ads-cert", id.Cert, "--ads-key", id.Key, "--ads-ca", id.CA, "--ads-peer-id", controlPlaneID}, nil
}

// proxyComponent writes a proxy's bundle as its node's base configuration
// at the control plane, and returns the proxy, which takes its
// configuration from the control plane over mutual TLS with its own
// identity (id).
func (r *renderer) proxyComponent(name string, node meshes.Node, b *xds.Bundle, id xds.TLSFiles, mark int) (meshes.Component, error) {
	return r.proxyComponentAt(name, node, meshes.HostPort(node.Addr, AdminPort), b, id, mark)
}

// proxyComponentAt is proxyComponent with its admin listener at admin (a
// second proxy on a node: a waypoint).
func (r *renderer) proxyComponentAt(name string, node meshes.Node, admin string, b *xds.Bundle, id xds.TLSFiles, mark int) (meshes.Component, error) {
	path, err := r.writeBundle(name, b)
	if err != nil {
		return meshes.Component{}, err
	}
	r.model.Nodes[name] = filepath.Base(path)
	if r.model.Metrics == nil {
		r.model.Metrics = map[string]string{}
	}
	r.model.Metrics[name] = "http://" + admin + "/metrics"
	if r.profiles == nil {
		r.profiles = map[string]string{}
	}
	r.profiles[name] = "http://" + admin + "/debug/pprof/"
	c := meshes.Component{
		Name:    name,
		Class:   "proxy",
		Node:    node.Name,
		Command: meshes.ProxyCommand,
		Args: []string{"proxy", "--ads", r.xdsAddr(), "--node", name, "--admin", admin, "--mode", r.mode,
			"--ads-cert", id.Cert, "--ads-key", id.Key, "--ads-ca", id.CA, "--ads-peer-id", controlPlaneID,
			"--ads-mark", strconv.Itoa(mark)},
		Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
	}
	if t := r.tuning; t != nil {
		if t.Binary != "" {
			c.Command = t.Binary
		}
		if t.GOGC != 0 {
			c.Args = append(c.Args, "--gogc", t.GOGC.String())
		}
		if t.MemoryLimit > 0 {
			c.Args = append(c.Args, "--memory-limit", strconv.FormatInt(int64(t.MemoryLimit), 10))
		}
		if t.HTTP1 != "" {
			c.Args = append(c.Args, "--http1", t.HTTP1)
		}
	}
	return c, nil
}
