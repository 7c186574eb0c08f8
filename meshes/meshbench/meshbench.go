// Package meshbench deploys meshbench's own proxy (package proxy) as a mesh.
// It renders xDS resources (package proxy/xds) for each proxy and issues
// every workload a SPIFFE identity from a per-deployment CA, so that all
// traffic between mesh hops is mutual TLS.
package meshbench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// Ports the sidecars use, as Istio's do.
const (
	AdminPort    = 15000
	OutboundPort = 15001
	InboundPort  = 15006
)

// Identity settings.
const (
	TrustDomain = "meshbench.local"
	Namespace   = "default"
	CertTTL     = time.Hour
)

type mesh struct {
	version string
}

var (
	_ meshes.Mesh      = (*mesh)(nil)
	_ meshes.Versioned = (*mesh)(nil)
)

// New returns the own mesh; version names the proxy build in results.
func New(version string) meshes.Mesh { return &mesh{version: version} }

func (*mesh) Name() string { return "meshbench" }

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Sidecar} }

func (m *mesh) Version() string { return "meshbench-proxy " + m.version + " (mTLS)" }

// workloadID is a workload's SPIFFE ID: its service account is its name.
func workloadID(w meshes.Workload) string {
	return identity.SPIFFEID(TrustDomain, Namespace, w.Name)
}

// Deploy renders one sidecar per workload: the client's sidecar takes the
// client's requests on its outbound listener and sends them over mutual TLS
// to the server's sidecar, whose inbound listener accepts only the client's
// identity and hands requests to the server on its node.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	client, server := env.Client, env.Server
	ca, err := identity.NewCA(TrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	clientTLS, err := issue(ca, env.Dir, client)
	if err != nil {
		return nil, err
	}
	serverTLS, err := issue(ca, env.Dir, server)
	if err != nil {
		return nil, err
	}
	clientTLS.PeerIDs = []string{workloadID(server)}
	serverTLS.PeerIDs = []string{workloadID(client)}

	authority := server.Name + ":" + strconv.Itoa(server.Port)
	outbound := "outbound|" + strconv.Itoa(server.Port) + "||" + server.Name
	inbound := "inbound|" + strconv.Itoa(server.Port)
	clientSide := &xds.Bundle{
		// The downstream of the outbound listener is the local app: its
		// loopback address says nothing useful to the server.
		Listeners: []*listenerv3.Listener{xds.HTTPListener("outbound", meshes.HostPort(client.Node.Local, OutboundPort),
			corev3.TrafficDirection_OUTBOUND, false, xds.Routes("outbound", []string{server.Name, authority}, outbound), nil)},
		Clusters:  []*clusterv3.Cluster{xds.EDSCluster(outbound, 2*time.Second, clientTLS)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment(outbound, meshes.HostPort(server.Node.Addr, InboundPort))},
	}
	serverSide := &xds.Bundle{
		Listeners: []*listenerv3.Listener{xds.HTTPListener("inbound", meshes.HostPort(server.Node.Addr, InboundPort),
			corev3.TrafficDirection_INBOUND, true, xds.Routes("inbound", []string{"*"}, inbound), serverTLS)},
		Clusters:  []*clusterv3.Cluster{xds.EDSCluster(inbound, 2*time.Second, nil)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment(inbound, meshes.HostPort(server.Node.Local, server.Port))},
	}
	var comps []meshes.Component
	for _, side := range []struct {
		w meshes.Workload
		b *xds.Bundle
	}{{client, clientSide}, {server, serverSide}} {
		c, err := sidecar(env.Dir, side.w, side.b)
		if err != nil {
			return nil, err
		}
		comps = append(comps, c)
	}
	return &meshes.Deployment{
		Components: comps,
		Target: meshes.Target{
			URL:  "http://" + meshes.HostPort(client.Node.Local, OutboundPort) + "/",
			Host: authority,
		},
	}, nil
}

func issue(ca *identity.CA, dir string, w meshes.Workload) (*xds.TLSFiles, error) {
	f := identity.FilesIn(dir, w.Name)
	if err := ca.IssueFiles(f, workloadID(w), CertTTL); err != nil {
		return nil, fmt.Errorf("identity for %s: %w", w.Name, err)
	}
	return &xds.TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}, nil
}

// sidecar writes the proxy's bundle and returns its component. The bundle
// is translated here too, so that a rendering bug fails the deployment with
// its reason rather than as a proxy that exits at start.
func sidecar(dir string, w meshes.Workload, b *xds.Bundle) (meshes.Component, error) {
	name := w.Name + "-sidecar"
	admin := meshes.HostPort(w.Node.Addr, AdminPort)
	if _, err := xds.Translate(b, name, admin); err != nil {
		return meshes.Component{}, fmt.Errorf("render %s: %w", name, err)
	}
	data, err := b.Marshal()
	if err != nil {
		return meshes.Component{}, err
	}
	path := filepath.Join(dir, name+".xds.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return meshes.Component{}, err
	}
	return meshes.Component{
		Name:  name,
		Class: "proxy",
		Node:  w.Node.Name,
		Args:  []string{"proxy", "--xds", path, "--node", name, "--admin", admin},
		Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
	}, nil
}
