// Package controlplane is meshbench's control plane: an xDS server (the
// snapshot cache and ADS server of github.com/envoyproxy/go-control-plane,
// state of the world and incremental) that serves each node ID its
// listeners, routes, clusters and endpoints, compiled from the mesh's base
// configuration and the traffic policy in force, and reports what every
// client acknowledged or rejected.
//
// It is the mesh's control plane, not the harness: it imports nothing from
// meshes, runner or scenarios; what it serves comes from a Model file and
// from policy updates over its admin API.
package controlplane

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshbench/meshbench/proxy/xds"
)

// Logger receives the control plane's operational messages.
type Logger interface {
	Logf(format string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}

// Server compiles configurations and serves them over xDS.
type Server struct {
	log Logger
	// adsCache serves the own proxies, grpcCache grpc-go's nodes
	// (grpcNodes, fixed at New).
	adsCache, grpcCache cachev3.SnapshotCache
	grpcNodes           map[string]bool
	xds                 serverv3.Server

	mu      sync.Mutex
	version int
	// setAt[v-1] is when version v was set.
	setAt   []time.Time
	nodes   map[string]*nodeState
	streams map[int64]string // stream ID -> node ID
	open    map[string]int   // node ID -> streams open
	// snaps is the snapshot in force for each node of the configuration;
	// replicas, the clients serving as replicas of each (see request).
	snaps    map[string]*cachev3.Snapshot
	replicas map[string][]string
}

// nodeState is what the server knows of one node ID.
type nodeState struct {
	status NodeStatus
	// sent is the version of each nonce this node was sent.
	sent map[string]string
}

// NodeStatus is one node's view of the configuration, as its client
// reported it.
type NodeStatus struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	// Client is the client's user agent (meshbench-proxy, grpc-go...).
	Client string `json:"client,omitempty"`
	// ReplicaOf is the node whose configuration this one is served, for
	// a client the configuration does not name.
	ReplicaOf string `json:"replicaOf,omitempty"`
	// Acked is the version each type was last acknowledged at.
	Acked map[string]string `json:"acked"`
	// AckedAfter is how long after the version was set each type's
	// acknowledgement came.
	AckedAfter map[string]time.Duration `json:"ackedAfterNs"`
	// NACKs are the configurations this node rejected, with the reason.
	NACKs []NACK `json:"nacks,omitempty"`
	// Current says the node acknowledged, for every type it was sent, the
	// version in force for it.
	Current bool `json:"current"`
}

// NACK is one rejected response.
type NACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sends the server's messages to l.
func WithLogger(l Logger) Option { return func(s *Server) { s.log = l } }

// New returns a server with no configuration yet.
func New(ctx context.Context, opts ...Option) *Server {
	s := &Server{log: nopLogger{}, nodes: map[string]*nodeState{}, streams: map[int64]string{}, open: map[string]int{},
		snaps: map[string]*cachev3.Snapshot{}, replicas: map[string][]string{}, grpcNodes: map[string]bool{}}
	for _, o := range opts {
		o(s)
	}
	// Two caches. The own proxies' is in go-control-plane's "ADS mode",
	// which sends a change's types in Envoy's order (clusters, endpoints,
	// listeners, routes: a route never arrives before its cluster). That
	// mode answers a request naming resources only once it names every
	// resource of the type, and grpc-go names its listeners one watch at
	// a time (its server's, then each channel's), so grpc-go's nodes have
	// a cache out of that mode, which answers what is named.
	s.adsCache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	s.grpcCache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	classify := func(n *corev3.Node) string {
		if s.grpcNodes[n.GetId()] {
			return "grpc"
		}
		return "ads"
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return classify(r.GetNode()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return classify(r.GetNode()) },
		Caches:        map[string]cachev3.Cache{"ads": s.adsCache, "grpc": s.grpcCache},
	}
	s.xds = serverv3.NewServer(ctx, mux, s.callbacks())
	return s
}

// WithGRPCNodes names the nodes that are grpc-go's own xDS clients.
func WithGRPCNodes(ids ...string) Option {
	return func(s *Server) {
		for _, id := range ids {
			s.grpcNodes[id] = true
		}
	}
}

// cache is the snapshot cache that serves node id.
func (s *Server) cache(id string) cachev3.SnapshotCache {
	if s.grpcNodes[id] {
		return s.grpcCache
	}
	return s.adsCache
}

// GRPCOptions are the gRPC server options a control plane is best served
// with. It holds a connection per client and xDS messages are small: the
// per-connection buffers are small (the write buffer released between
// flushes), and the flow-control windows fixed, which turns off gRPC's
// bandwidth-estimation pings (a round trip per client and response).
func GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(0), grpc.WriteBufferSize(8 << 10), grpc.SharedWriteBuffer(true),
		grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20),
	}
}

// Register adds the xDS services (ADS, state of the world and delta, and
// the per-type ones) to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Set makes bundles (by node ID) the configuration in force, as one new
// version, and returns it. The version's propagation is timed from the
// call: what the snapshots cost to build and hand out is part of it.
func (s *Server) Set(ctx context.Context, bundles map[string]*xds.Bundle) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setAt = append(s.setAt, time.Now())
	s.version++
	version := strconv.Itoa(s.version)
	for _, node := range slices.Sorted(maps.Keys(bundles)) {
		snap, err := snapshot(version, bundles[node], s.snaps[node])
		if err != nil {
			return "", fmt.Errorf("node %s: %w", node, err)
		}
		if snap == s.snaps[node] {
			continue // nothing of the node's changed: nothing to send it or its replicas
		}
		s.snaps[node] = snap
		for _, id := range append([]string{node}, s.replicas[node]...) {
			if err := s.cache(id).SetSnapshot(ctx, id, snap); err != nil {
				return "", fmt.Errorf("node %s: %w", id, err)
			}
		}
		s.node(node)
	}
	return version, nil
}

// snapshotTypes are the types every snapshot holds, empty or not, so that
// a client subscribed to all four hears of each.
var snapshotTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// snapshot builds a node's snapshot of b. Each type is versioned on its
// own, as Envoy's control planes do: a type whose resources are those of
// prev keeps prev's version (and is not sent again); a changed one takes
// version. When no type changed, prev itself is returned.
func snapshot(version string, b *xds.Bundle, prev *cachev3.Snapshot) (*cachev3.Snapshot, error) {
	byType := b.Resources()
	snap := &cachev3.Snapshot{}
	changed := prev == nil
	for _, typ := range snapshotTypes {
		i := cachev3.GetResponseType(typ)
		items := make([]types.Resource, 0, len(byType[typ]))
		for _, m := range byType[typ] {
			items = append(items, m.(types.Resource))
		}
		snap.Resources[i] = cachev3.NewResources(version, items)
		if prev != nil && sameResources(prev.Resources[i], snap.Resources[i]) {
			snap.Resources[i] = prev.Resources[i]
		} else {
			changed = true
		}
	}
	if !changed {
		return prev, nil
	}
	// The snapshot is shared with the node's replicas; the cache builds its
	// delta version map under its own lock, once.
	return snap, nil
}

func sameResources(a, b cachev3.Resources) bool {
	if len(a.Items) != len(b.Items) {
		return false
	}
	for name, r := range a.Items {
		o, ok := b.Items[name]
		if !ok || !proto.Equal(r.Resource, o.Resource) {
			return false
		}
	}
	return true
}

// Version returns the version in force ("0" before the first Set).
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.Itoa(s.version)
}

// Status returns every node's status, by node ID.
func (s *Server) Status() map[string]NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]NodeStatus{}
	for id, n := range s.nodes {
		st := n.status
		st.Current = s.current(id, n)
		st.Acked = maps.Clone(st.Acked)
		st.AckedAfter = maps.Clone(st.AckedAfter)
		st.NACKs = slices.Clone(st.NACKs)
		out[id] = st
	}
	return out
}

// node returns the state of node id, creating it. The caller holds s.mu.
func (s *Server) node(id string) *nodeState {
	n := s.nodes[id]
	if n == nil {
		n = &nodeState{status: NodeStatus{Node: id, Acked: map[string]string{}, AckedAfter: map[string]time.Duration{}}, sent: map[string]string{}}
		s.nodes[id] = n
	}
	return n
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamClosedFunc:      s.closed,
		DeltaStreamClosedFunc: s.closed,
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			rejected := s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage())
			if rejected != "" {
				// A NACK names the last version the client applied; the
				// snapshot cache would answer it at once with the version
				// just rejected, and again, without end. The watch waits
				// for a version after the rejected one instead, as Envoy's
				// control planes do.
				req.VersionInfo = rejected
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.response(id, resp.GetNonce(), resp.GetVersionInfo())
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			// Delta requests carry no version: an ACK names the nonce,
			// whose version the server sent.
			_ = s.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			s.response(id, resp.GetNonce(), resp.GetSystemVersionInfo())
		},
	}
}

// request records an ACK (a nonce, no error) or a NACK (an error); for a
// NACK it returns the rejected version.
func (s *Server) request(stream int64, node *corev3.Node, typeURL, nonce, version, nackMsg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.streams[stream]
	if node.GetId() != "" && id != node.GetId() {
		id = node.GetId()
		s.streams[stream] = id
		s.open[id]++
	}
	if id == "" {
		return ""
	}
	if _, known := s.nodes[id]; !known {
		s.replicate(id, node.GetCluster())
	}
	n := s.node(id)
	n.status.Connected = true
	if ua := node.GetUserAgentName(); ua != "" {
		n.status.Client = ua
	}
	if nonce == "" {
		return "" // a subscription, not an answer
	}
	sent := n.sent[nonce]
	delete(n.sent, nonce)
	short := typeURL[len(resource.APITypePrefix):]
	if nackMsg != "" {
		n.status.NACKs = append(n.status.NACKs, NACK{Type: short, Version: sent, Message: nackMsg, At: time.Now()})
		s.log.Logf("node %s rejected %s version %s: %s", id, short, sent, nackMsg)
		return sent
	}
	if version == "" {
		version = sent
	}
	if version != "" && version != n.status.Acked[short] {
		n.status.Acked[short] = version
		if at, ok := s.versionSet(version); ok {
			n.status.AckedAfter[short] = time.Since(at)
		} else {
			delete(n.status.AckedAfter, short)
		}
	}
	return ""
}

// replicate serves a client the server has no configuration for, whose
// node names a node of the configuration as its cluster, that node's
// configuration: many clients of one kind (the control-plane benchmark's
// simulated proxies) share one. The caller holds s.mu; the client's first
// request is not yet answered (the request callback runs first), so the
// snapshot set here answers it.
func (s *Server) replicate(id, of string) {
	snap := s.snaps[of]
	if snap == nil || of == id {
		return
	}
	if err := s.cache(id).SetSnapshot(context.Background(), id, snap); err != nil {
		s.log.Logf("node %s (replica of %s): %v", id, of, err)
		return
	}
	s.replicas[of] = append(s.replicas[of], id)
	s.node(id).status.ReplicaOf = of
}

func (s *Server) response(stream int64, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := s.streams[stream]; id != "" {
		s.node(id).sent[nonce] = version
	}
}

func (s *Server) closed(stream int64, node *corev3.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.streams[stream]
	delete(s.streams, stream)
	if !ok {
		id = node.GetId()
	} else {
		s.open[id]--
	}
	if s.open[id] > 0 {
		return // another stream of the node is open
	}
	delete(s.open, id)
	n := s.nodes[id]
	if n == nil {
		return
	}
	n.status.Connected = false
	if of := n.status.ReplicaOf; of != "" {
		// A replica that left is forgotten: its configuration was
		// another node's, and thousands come and go in a benchmark.
		s.replicas[of] = slices.DeleteFunc(s.replicas[of], func(r string) bool { return r == id })
		delete(s.nodes, id)
		s.cache(id).ClearSnapshot(id)
	}
}

// versionSet returns when version was set. The caller holds s.mu.
func (s *Server) versionSet(version string) (time.Time, bool) {
	v, err := strconv.Atoi(version)
	if err != nil || v < 1 || v > len(s.setAt) {
		return time.Time{}, false
	}
	return s.setAt[v-1], true
}

// snapshotOf returns the snapshot in force for node id (its own, or the
// one it replicates). The caller holds s.mu.
func (s *Server) snapshotOf(id string, n *nodeState) *cachev3.Snapshot {
	if n.status.ReplicaOf != "" {
		return s.snaps[n.status.ReplicaOf]
	}
	return s.snaps[id]
}

// current reports whether node id acknowledged, for every type it
// acknowledged at all, the version in force for it. The caller holds s.mu.
func (s *Server) current(id string, n *nodeState) bool {
	snap := s.snapshotOf(id, n)
	if snap == nil || len(n.status.Acked) == 0 {
		return false
	}
	for short, v := range n.status.Acked {
		if v != snap.GetVersion(resource.APITypePrefix+short) {
			return false
		}
	}
	return true
}

// Propagation is how far the latest version has reached.
type Propagation struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"`
	// Connected counts the clients with a stream open; Current, those of
	// them that run the configuration in force for them.
	Connected int `json:"connected"`
	Current   int `json:"current"`
	// Changed counts the connected clients whose configuration the version
	// changed (for some type).
	Changed int `json:"changed"`
	// AckedAfterMs are, for each Changed client that acknowledged every
	// type the version changed, the time from the change to its last
	// acknowledgement, in milliseconds, in ascending order.
	AckedAfterMs []float64 `json:"ackedAfterMs,omitempty"`
}

// Propagation reports the latest version's reach.
func (s *Server) Propagation() Propagation {
	s.mu.Lock()
	defer s.mu.Unlock()
	version := strconv.Itoa(s.version)
	p := Propagation{Version: version}
	p.Since, _ = s.versionSet(version)
	for id, n := range s.nodes {
		if !n.status.Connected {
			continue
		}
		p.Connected++
		if s.current(id, n) {
			p.Current++
		}
		snap := s.snapshotOf(id, n)
		if snap == nil {
			continue
		}
		changed, acked := false, true
		var last time.Duration
		for _, typ := range snapshotTypes {
			if snap.GetVersion(typ) != version {
				continue
			}
			changed = true
			short := typ[len(resource.APITypePrefix):]
			after, timed := n.status.AckedAfter[short]
			acked = acked && timed && n.status.Acked[short] == version
			last = max(last, after)
		}
		if changed {
			p.Changed++
			if acked {
				p.AckedAfterMs = append(p.AckedAfterMs, float64(last)/float64(time.Millisecond))
			}
		}
	}
	slices.Sort(p.AckedAfterMs)
	return p
}
