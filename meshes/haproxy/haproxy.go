// Package haproxy deploys HAProxy (Debian's haproxy package) as a reference
// data plane: as sidecars, and per node (the SmartStack pattern, one HAProxy
// per node that local apps call), with mutual TLS between the proxies. It
// renders HAProxy's configuration from the same topology, ports, timeouts
// and identities the own mesh uses, so the two are compared like for like.
package haproxy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

type mesh struct {
	meshes.Binary
}

var (
	_ meshes.Mesh            = (*mesh)(nil)
	_ meshes.Availability    = (*mesh)(nil)
	_ meshes.Versioned       = (*mesh)(nil)
	_ meshes.ProtocolCapable = (*mesh)(nil)
)

// New returns the HAProxy mesh.
func New() meshes.Mesh {
	return &mesh{meshes.Binary{Name: "haproxy", Package: "haproxy", VersionArgs: []string{"-v"}}}
}

func (*mesh) Name() string { return "haproxy" }

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode} }

// Deploy renders one HAProxy per workload (sidecar) or per node (per-node):
// a caller's outbound frontend picks a backend by the Host its app sent
// and sends over mutual TLS to the callee side's inbound frontend, which
// hands requests to the app. A node's HAProxy has such a pair of frontends
// for each of its pods (the SmartStack way: a port per pod), so on
// topologies where each workload has a node of its own both modes run the
// same processes. They also differ in interception: sidecars intercept
// transparently where the platform can, node proxies are dialed.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	ids, err := meshes.IssueAll(env)
	if err != nil {
		return nil, err
	}
	plan := meshes.PlanProxies(env, mode, meshes.Exclusion{UID: meshes.UserID("haproxy")})
	dep := &meshes.Deployment{Target: plan.Target, Apps: plan.Apps, Redirects: plan.Redirects, MTLS: true}
	suffix := "-haproxy"
	if mode == scenarios.PerNode {
		suffix = "-node-haproxy"
	}
	p := protocolOf(env.Protocol)
	for _, g := range env.ProxyGroups(mode) {
		id := ids[g.Owner()]
		// A shared node's HAProxy has a frontend pair per pod; the
		// sections' names then carry the pod's.
		section := func(kind string, w meshes.Workload) string {
			if g.Shared {
				return kind + "-" + w.Name
			}
			return kind
		}
		var body strings.Builder
		backends := map[string]bool{}
		for _, w := range g.Workloads {
			callees := env.Callees(w)
			if len(callees) == 0 {
				continue
			}
			fmt.Fprintf(&body, "frontend %s\n%s    bind %s%s\n", section("outbound", w), p.mode, meshes.NodeOutbound(w), p.plain)
			if w.OwnSource() {
				// The port is the pod's, as its node proxy knows it:
				// from the pod alone.
				fmt.Fprintf(&body, "    tcp-request connection reject unless { src %s }\n", w.Node.Addr)
			}
			if p.mode == "" {
				for _, c := range callees {
					fmt.Fprintf(&body, "    use_backend to-%s if { req.hdr(host) -m str %s %s }\n", c.Name, c.Name, c.Authority())
				}
			}
			fmt.Fprintf(&body, "    default_backend to-%s\n\n", callees[0].Name)
			for _, c := range callees {
				if backends[c.Name] {
					continue
				}
				backends[c.Name] = true
				fmt.Fprintf(&body, "backend to-%s\n%s", c.Name, p.mode)
				for _, pod := range c.Pods() {
					fmt.Fprintf(&body, "    server %s %s ssl crt %s ca-file %s verify required%s\n",
						pod.Name, plan.Upstream(pod), id.PEM, id.Files.CA, p.alpn)
				}
				body.WriteString("\n")
			}
		}
		for _, w := range g.Workloads {
			if w.Port == 0 {
				continue
			}
			forward := "    option forwardfor\n"
			if p.mode != "" {
				forward = ""
			}
			app := section("app", w)
			fmt.Fprintf(&body, `frontend %s
%s    bind %s ssl crt %s ca-file %s verify required%s
%s    default_backend %s

backend %s
%s    server app %s%s

`, section("inbound", w), p.mode, meshes.NodeInbound(w), id.PEM, id.Files.CA, p.alpn, forward, app, app, p.mode, meshes.NodeApp(w), p.plain)
		}
		name := g.Owner() + suffix
		path := filepath.Join(env.Dir, name+".cfg")
		if err := os.WriteFile(path, []byte(config(g.Node, plan.Transparent, body.String())), 0o644); err != nil {
			return nil, err
		}
		admin := meshes.HostPort(g.Node.Addr, meshes.AdminPort)
		dep.Components = append(dep.Components, meshes.Component{
			Name: name, Class: "proxy", Node: g.Node.Name,
			Command: "haproxy", Args: []string{"-db", "-f", path},
			Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
		})
		if dep.ProxyMetrics == nil {
			dep.ProxyMetrics = map[string]string{}
		}
		dep.ProxyMetrics[name] = "http://" + admin + "/metrics"
	}
	return dep, nil
}

// SupportsReplicas: a backend has a server per pod, taken in turn
// (HAProxy's defaults: round robin, 3 connection retries on the same
// server, no health checks).
func (*mesh) SupportsReplicas(scenarios.Mode) error { return nil }

// Carries HTTP/1.1, HTTP/2 (h2c from and to the apps, h2 over mutual TLS
// between the proxies), gRPC over it, and TCP (mode tcp), in both modes.
func (*mesh) Carries(string, scenarios.Mode) error { return nil }

// protocol is how a load protocol changes the rendered sections: their
// mode line, the cleartext binds' and servers' protocol, and the ALPN of
// the mutual-TLS hop.
type protocol struct{ mode, plain, alpn string }

func protocolOf(p string) protocol {
	switch p {
	case scenarios.ProtocolTCP:
		return protocol{mode: "    mode tcp\n"}
	case scenarios.ProtocolHTTP2, scenarios.ProtocolGRPC:
		// Cleartext HTTP/2 with prior knowledge, as the apps speak it.
		return protocol{plain: " proto h2", alpn: " alpn h2"}
	}
	return protocol{alpn: " alpn http/1.1"}
}

// config is the global and default part every HAProxy shares: one thread
// (the own proxy is pinned to one CPU too), keep-alive on both sides with
// connection reuse, the own proxy's timeouts, and an admin frontend
// (readiness, and the Prometheus exporter built into Debian's HAProxy).
func config(node meshes.Node, dropPrivileges bool, body string) string {
	var b strings.Builder
	b.WriteString("global\n    nbthread 1\n    maxconn 4096\n    log stderr format raw local0 warning\n")
	if dropPrivileges {
		// Its own connections then carry the haproxy uid, which the
		// interception rules let pass. By number, the one the rules name:
		// a container image's haproxy user may have another.
		fmt.Fprintf(&b, "    uid %d\n    gid %d\n", meshes.UserID("haproxy"), meshes.GroupID("haproxy"))
	}
	fmt.Fprintf(&b, `
defaults
    mode http
    log global
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 15s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend admin
    bind %s
    monitor-uri /ready
    http-request use-service prometheus-exporter if { path /metrics }

`, meshes.HostPort(node.Addr, meshes.AdminPort))
	b.WriteString(body)
	return b.String()
}
