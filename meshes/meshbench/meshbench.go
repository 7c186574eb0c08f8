// Package meshbench deploys meshbench's own data plane (package proxy) as a
// mesh, in three modes: a sidecar proxy per workload, one shared proxy per
// node (ztunnel-style, node proxies talking HTTP/2 over one mutual-TLS
// connection per peer node), and proxyless (the workloads link
// proxy/proxyless). Every mode is configured with xDS resources (package
// proxy/xds), and every workload gets a SPIFFE identity from a
// per-deployment CA, so that all traffic between mesh hops is mutual TLS.
package meshbench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// Ports and identity settings shared with the reference data planes (so
// every mesh is measured on the same ones), and the own mesh's extra ports.
const (
	AdminPort     = meshes.AdminPort
	OutboundPort  = meshes.OutboundPort
	InboundPort   = meshes.InboundPort
	TunnelPort    = 15008 // per-node: HTTP/2 between node proxies (HBONE's port)
	ProxylessPort = 8443  // proxyless: the server workload's own mTLS port
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
}

var (
	_ meshes.Mesh      = (*mesh)(nil)
	_ meshes.Versioned = (*mesh)(nil)
)

// New returns the own mesh; version names the proxy build in results.
func New(version string) meshes.Mesh { return &mesh{version: version} }

func (*mesh) Name() string { return "meshbench" }

func (*mesh) Modes() []scenarios.Mode {
	return []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode, scenarios.Proxyless}
}

func (m *mesh) Version() string { return "meshbench-proxy " + m.version + " (mTLS)" }

// Deploy renders the mode's components and configuration.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	ca, err := identity.NewCA(TrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	r := &renderer{env: env, ca: ca, mode: string(mode)}
	switch mode {
	case scenarios.PerNode:
		return r.perNode()
	case scenarios.Proxyless:
		return r.proxyless()
	}
	return r.sidecar()
}

type renderer struct {
	env  meshes.Env
	ca   *identity.CA
	mode string
}

// workloadID is a workload's SPIFFE ID: its service account is its name.
func workloadID(w meshes.Workload) string {
	return identity.SPIFFEID(TrustDomain, Namespace, w.Name)
}

// nodeID is a node proxy's SPIFFE ID.
func nodeID(n meshes.Node) string {
	return identity.SPIFFEID(TrustDomain, SystemNamespace, "node-"+n.Name)
}

// issue issues name the identity id; the returned files accept no peer
// until a copy names them (withPeers).
func (r *renderer) issue(name, id string) (xds.TLSFiles, error) {
	f := identity.FilesIn(r.env.Dir, name)
	if err := r.ca.IssueFiles(f, id, CertTTL); err != nil {
		return xds.TLSFiles{}, fmt.Errorf("identity for %s: %w", name, err)
	}
	return xds.TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA}, nil
}

// withPeers is t accepting exactly peers.
func withPeers(t xds.TLSFiles, peers ...string) *xds.TLSFiles {
	t.PeerIDs = peers
	return &t
}

// callerIDs are the SPIFFE IDs of the workloads that call svc.
func (r *renderer) callerIDs(svc meshes.Service) []string {
	var ids []string
	for _, w := range r.env.Callers(svc.Name) {
		ids = append(ids, workloadID(w))
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

// proxyComponent writes a proxy's bundle and returns its component.
func (r *renderer) proxyComponent(name string, node meshes.Node, b *xds.Bundle) (meshes.Component, error) {
	path, err := r.writeBundle(name, b)
	if err != nil {
		return meshes.Component{}, err
	}
	admin := meshes.HostPort(node.Addr, AdminPort)
	return meshes.Component{
		Name:  name,
		Class: "proxy",
		Node:  node.Name,
		Args:  []string{"proxy", "--xds", path, "--node", name, "--admin", admin, "--mode", r.mode},
		Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
	}, nil
}
