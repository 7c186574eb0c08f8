// Package nginx deploys nginx (Debian's nginx-light) as a reference sidecar
// data plane (the NGINX mesh pattern): one nginx beside each workload, with
// mutual TLS between them, rendered from the same topology, ports, timeouts
// and identities as the own mesh.
package nginx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/identity"
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

// New returns the nginx mesh.
func New() meshes.Mesh {
	return &mesh{meshes.Binary{Name: "nginx", Package: "nginx-light", VersionArgs: []string{"-v"}}}
}

func (*mesh) Name() string { return "nginx" }

// StreamModule is Debian's build of nginx's stream module
// (libnginx-mod-stream), which carries TCP.
var StreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// Carries HTTP/1.1 (proxy_pass), gRPC (grpc_pass: HTTP/2 on every hop) and
// TCP (the stream module, where installed). Not plain HTTP/2: proxy_pass
// speaks HTTP/1.x to upstreams.
func (*mesh) Carries(protocol string, _ scenarios.Mode) error {
	switch protocol {
	case scenarios.ProtocolHTTP2:
		return errors.New("nginx's proxy_pass speaks HTTP/1.x to upstreams, so HTTP/2 would not stay HTTP/2 end to end")
	case scenarios.ProtocolTCP:
		if _, err := os.Stat(StreamModule); err != nil {
			return fmt.Errorf("nginx carries TCP through its stream module, which is not installed (%s: Debian's libnginx-mod-stream; scripts/setup.sh installs it as root)", StreamModule)
		}
	}
	return nil
}

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Sidecar} }

// Deploy renders an nginx beside every workload, each with one worker and
// upstream keep-alive pools: a caller's nginx has one outbound server per
// callee (chosen by the Host its app sent: plaintext from the app, mutual
// TLS to the callee's nginx, verified by name and CA); a service's nginx has
// an inbound server (mutual TLS required, then plaintext to the app).
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	ids, err := meshes.IssueAll(env)
	if err != nil {
		return nil, err
	}
	// Workers run as the user nginx switches to; their connections carry
	// its uid, which interception lets pass.
	user := "www-data"
	plan := meshes.PlanProxies(env, scenarios.Sidecar, meshes.Exclusion{UID: meshes.UserID(user)})
	dep := &meshes.Deployment{Target: plan.Target, Apps: plan.Apps, Redirects: plan.Redirects, MTLS: true}
	d := dialectOf(env.Protocol)
	for _, w := range env.Workloads() {
		id := ids[w.Name]
		var blocks strings.Builder
		for _, c := range env.Callees(w) {
			blocks.WriteString(d.outbound(c.Name, plan.Upstream(c.Workload), meshes.HostPort(w.Node.Local, meshes.OutboundPort), id.Files))
		}
		if w.Port != 0 {
			blocks.WriteString(d.inbound(meshes.HostPort(w.Node.Local, w.Port), meshes.HostPort(w.Node.Addr, meshes.InboundPort), id.Files))
		}
		body, stream := blocks.String(), ""
		if d.stream {
			body, stream = "", blocks.String()
		}
		name := w.Name + "-nginx"
		dir := filepath.Join(env.Dir, name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, err
		}
		admin := meshes.HostPort(w.Node.Addr, meshes.AdminPort)
		modules, streams := "", ""
		if d.stream {
			modules = "load_module " + StreamModule + ";\n"
			streams = "stream {\n    proxy_connect_timeout 2s;\n" + stream + "}\n"
		}
		cfg := fmt.Sprintf(`# rendered by meshbench
%suser %s;
worker_processes 1;
daemon off;
master_process on;
pid %s;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_header_timeout 10s;
    proxy_connect_timeout 2s;
    proxy_read_timeout 15s;
    server {
        listen %s;
        location = /ready { return 200 "ready\n"; }
    }
%s}
%s`, modules, user, filepath.Join(dir, "nginx.pid"), dir, dir, admin, body, streams)
		path := filepath.Join(env.Dir, name+".conf")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, meshes.Component{
			Name: name, Class: "proxy", Node: w.Node.Name,
			Command: "nginx", Args: []string{"-c", path, "-e", "stderr"},
			Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
		})
	}
	return dep, nil
}

// dialect is how nginx forwards one load protocol: HTTP/1.1 with
// proxy_pass, gRPC with grpc_pass (HTTP/2 on every hop), TCP with the
// stream module's proxy_pass. Every hop between nginxes is mutual TLS,
// verified by name and CA.
type dialect struct {
	stream bool // in the stream block, not the http one
	// listen is the outbound listener's parameter ("http2": h2c from the
	// app), secure the inbound one's ("ssl http2").
	listen, secure string
	// out and in are the directives that forward to the callee's nginx
	// (whose TLS directives start with out's prefix) and to the app.
	out, tlsPrefix, in string
}

func dialectOf(protocol string) dialect {
	switch protocol {
	case scenarios.ProtocolGRPC:
		return dialect{listen: " http2", secure: " ssl http2",
			out: "grpc_pass grpcs://%s;", tlsPrefix: "grpc_ssl_", in: "grpc_pass grpc://app;"}
	case scenarios.ProtocolTCP:
		return dialect{stream: true, secure: " ssl", out: "proxy_pass %s;\n        proxy_ssl on;", tlsPrefix: "proxy_ssl_", in: "proxy_pass app;"}
	}
	return dialect{secure: " ssl",
		out:       "proxy_pass https://%s;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        proxy_set_header Host $http_host;",
		tlsPrefix: "proxy_ssl_",
		in:        "proxy_pass http://app;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        proxy_set_header Host $http_host;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"}
}

// upstream is an upstream block; http ones keep connections alive.
func (d dialect) upstream(name, addr string) string {
	keepalive := "\n        keepalive 128;"
	if d.stream {
		keepalive = ""
	}
	return fmt.Sprintf("\n    upstream %s {\n        server %s;%s\n    }\n", name, addr, keepalive)
}

// server is a server block listening on listen, with serverLevel
// directives (TLS), forwarding with forward; http ones match name (when
// set) and forward every path.
func (d dialect) server(listen, name, serverLevel, forward string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    server {\n        listen %s;\n%s", listen, serverLevel)
	switch {
	case d.stream:
		fmt.Fprintf(&b, "        %s\n", forward)
	default:
		if name != "" {
			fmt.Fprintf(&b, "        server_name %s;\n", name)
		}
		fmt.Fprintf(&b, "        location / {\n            %s\n        }\n", strings.ReplaceAll(forward, "\n        ", "\n            "))
	}
	b.WriteString("    }\n")
	return b.String()
}

// outbound takes the app's traffic for callee on listen and sends it to
// the callee's nginx at upstream.
func (d dialect) outbound(callee, upstream, listen string, id identity.Files) string {
	p := d.tlsPrefix
	tls := fmt.Sprintf("\n        %scertificate %s;\n        %scertificate_key %s;\n        %strusted_certificate %s;\n        %sverify on;\n        %sname %s;\n        %ssession_reuse on;",
		p, id.Cert, p, id.Key, p, id.CA, p, p, callee, p)
	return d.upstream("to-"+callee, upstream) + d.server(listen+d.listen, callee, "", fmt.Sprintf(d.out, "to-"+callee)+tls)
}

// inbound takes its callers' mutual TLS on listen and hands the traffic to
// the app at app.
func (d dialect) inbound(app, listen string, id identity.Files) string {
	tls := fmt.Sprintf("        ssl_certificate %s;\n        ssl_certificate_key %s;\n        ssl_client_certificate %s;\n        ssl_verify_client on;\n",
		id.Cert, id.Key, id.CA)
	return d.upstream("app", app) + d.server(listen+d.secure, "", tls, d.in)
}
