package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/meshbench/meshbench/proxy/xds"
)

// Model is what the control plane serves before any policy: each node
// ID's base configuration (what a mesh renders for its topology), and the
// index of the mesh's services that policy refers to.
type Model struct {
	// Nodes maps each node ID (a proxy, or a proxyless workload) to its
	// base xDS bundle file; relative paths are relative to the model file.
	Nodes map[string]string `json:"nodes"`
	// Metrics maps the nodes that export Prometheus metrics (proxies) to
	// their URL, which the Traffic Metrics API reads.
	Metrics map[string]string `json:"metrics,omitempty"`
	// MetricsMark, when set, is the SO_MARK of the control plane's
	// connections to those URLs: on a node whose outbound traffic a
	// sidecar intercepts, the mark interception lets pass.
	MetricsMark int `json:"metricsMark,omitempty"`
	// GRPC are the nodes that are grpc-go's own xDS clients and servers
	// (proxyless gRPC): their bundles are read as grpc-go resources, not
	// checked against the proxy's subset.
	GRPC []string `json:"grpc,omitempty"`
	// Services are the mesh's services, as policy names them.
	Services []Service `json:"services,omitempty"`
	// Accounts are the SPIFFE IDs of the mesh's service accounts (every
	// workload's, callers that are no service included), as TrafficTarget
	// sources name them.
	Accounts map[string]string `json:"accounts,omitempty"`
	// DenyByDefault turns access control on for every service: a call no
	// TrafficTarget allows is denied (SMI's access control with nothing
	// permissive, as OSM's permissive mode off), not only at destinations
	// some TrafficTarget selects.
	DenyByDefault bool `json:"denyByDefault,omitempty"`
}

// Service is one of the mesh's services and where its configuration is:
// what policy needs to route to it, split it and authorize calls to it.
type Service struct {
	Name string `json:"name"`
	// Identity is the SPIFFE ID of the service's workload.
	Identity string `json:"identity"`
	// ServiceAccount is the workload's service account, as SMI's
	// TrafficTarget destinations name it.
	ServiceAccount string `json:"serviceAccount"`
	// Authority is the service's name:port, the Host its callers send.
	Authority string `json:"authority"`
	// Routes are, per calling node, the virtual host that sends requests
	// to the service.
	Routes []RouteRef `json:"routes,omitempty"`
	// Clusters are, per calling node, the cluster whose endpoints are the
	// service's.
	Clusters map[string]string `json:"clusters,omitempty"`
	// Inbound are the listeners that take the service's requests, where
	// its access policy applies.
	Inbound []ListenerRef `json:"inbound,omitempty"`
	// Selects are the services whose workloads this one's selector covers
	// (a Kubernetes Service over their pods): unless a TrafficSplit or a
	// route says otherwise, its callers spread its requests over them
	// evenly.
	Selects []string `json:"selects,omitempty"`
}

// RouteRef is a virtual host of a node's listener (its route
// configuration inline, or by RDS).
type RouteRef struct {
	Node        string `json:"node"`
	Listener    string `json:"listener"`
	VirtualHost string `json:"virtualHost"`
	// RewriteAuthority says requests sent on to another service (a split's
	// backend) must carry that service's authority: the node proxy at the
	// other end routes by it.
	RewriteAuthority bool `json:"rewriteAuthority,omitempty"`
}

// ListenerRef is a listener of a node.
type ListenerRef struct {
	Node     string `json:"node"`
	Listener string `json:"listener"`
	// SourceHeader, when set, is where the listener finds the calling
	// workload's identity (node proxies' tunnels); otherwise the peer
	// certificate says it.
	SourceHeader string `json:"sourceHeader,omitempty"`
	// Cluster, when set, is the cluster of the listener's that sends to
	// the service: the listener takes other services' requests too (a
	// shared node proxy's tunnel), so its telemetry counts only those
	// sent there.
	Cluster string `json:"cluster,omitempty"`
}

// ReadModel reads a model file and the bundles it names.
func ReadModel(path string) (*Model, map[string]*xds.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var m Model
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Nodes) == 0 {
		return nil, nil, fmt.Errorf("%s: no nodes", path)
	}
	bundles := map[string]*xds.Bundle{}
	for _, node := range slices.Sorted(maps.Keys(m.Nodes)) {
		file := m.Nodes[node]
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(path), file)
		}
		read := xds.ReadFile
		if slices.Contains(m.GRPC, node) {
			read = xds.ReadFileAny
		}
		b, err := read(file)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: node %s: %w", path, node, err)
		}
		bundles[node] = b
	}
	return &m, bundles, nil
}

// WriteModel writes m to path.
func WriteModel(path string, m *Model) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
