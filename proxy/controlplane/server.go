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
	log   Logger
	cache cachev3.SnapshotCache
	xds   serverv3.Server

	mu      sync.Mutex
	version int
	// changed is when the configuration of version was set.
	changed time.Time
	nodes   map[string]*nodeState
	streams map[int64]string // stream ID -> node ID
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
	// Acked is the version each type was last acknowledged at.
	Acked map[string]string `json:"acked"`
	// AckedAfter is how long after the version was set each type's
	// acknowledgement came.
	AckedAfter map[string]time.Duration `json:"ackedAfterNs"`
	// NACKs are the configurations this node rejected, with the reason.
	NACKs []NACK `json:"nacks,omitempty"`
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
	s := &Server{log: nopLogger{}, nodes: map[string]*nodeState{}, streams: map[int64]string{}}
	for _, o := range opts {
		o(s)
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	s.xds = serverv3.NewServer(ctx, s.cache, s.callbacks())
	return s
}

// Register adds the xDS services (ADS, state of the world and delta, and
// the per-type ones) to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Set makes bundles (by node ID) the configuration in force, as one new
// version, and returns it.
func (s *Server) Set(ctx context.Context, bundles map[string]*xds.Bundle) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	version := strconv.Itoa(s.version)
	for _, node := range slices.Sorted(maps.Keys(bundles)) {
		snap, err := snapshot(version, bundles[node])
		if err != nil {
			return "", fmt.Errorf("node %s: %w", node, err)
		}
		if err := s.cache.SetSnapshot(ctx, node, snap); err != nil {
			return "", fmt.Errorf("node %s: %w", node, err)
		}
		s.node(node)
	}
	s.changed = time.Now()
	return version, nil
}

func snapshot(version string, b *xds.Bundle) (*cachev3.Snapshot, error) {
	res := map[resource.Type][]types.Resource{}
	for typ, msgs := range b.Resources() {
		for _, m := range msgs {
			res[typ] = append(res[typ], m.(types.Resource))
		}
	}
	// Every type is present, empty or not, so that a client subscribed to
	// all four hears of each version.
	for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		if res[typ] == nil {
			res[typ] = []types.Resource{}
		}
	}
	return cachev3.NewSnapshot(version, res)
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
	if node.GetId() != "" {
		id = node.GetId()
		s.streams[stream] = id
	}
	if id == "" {
		return ""
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
		if version == strconv.Itoa(s.version) {
			n.status.AckedAfter[short] = time.Since(s.changed)
		}
	}
	return ""
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
	id := s.streams[stream]
	delete(s.streams, stream)
	if id == "" {
		id = node.GetId()
	}
	for _, other := range s.streams {
		if other == id {
			return // another stream of the node is open
		}
	}
	if n := s.nodes[id]; n != nil {
		n.status.Connected = false
	}
}
