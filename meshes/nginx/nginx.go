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
	plan := meshes.PlanProxies(env, true, meshes.Exclusion{UID: meshes.UserID(user)})
	dep := &meshes.Deployment{Target: plan.Target, Apps: plan.Apps, Redirects: plan.Redirects, MTLS: true}
	grpc := env.Protocol == scenarios.ProtocolGRPC
	tcp := env.Protocol == scenarios.ProtocolTCP
	for _, w := range env.Workloads() {
		id := ids[w.Name]
		var body, stream strings.Builder
		for _, c := range env.Callees(w) {
			if tcp {
				fmt.Fprintf(&stream, `
    upstream to-%s {
        server %s;
    }
    server {
        listen %s;
        proxy_pass to-%s;
        proxy_ssl on;
        proxy_ssl_certificate %s;
        proxy_ssl_certificate_key %s;
        proxy_ssl_trusted_certificate %s;
        proxy_ssl_verify on;
        proxy_ssl_name %s;
        proxy_ssl_session_reuse on;
    }
`, c.Name, plan.Upstream(c), meshes.HostPort(w.Node.Local, meshes.OutboundPort), c.Name, id.Files.Cert, id.Files.Key, id.Files.CA, c.Name)
				continue
			}
			if grpc {
				fmt.Fprintf(&body, `
    upstream to-%s {
        server %s;
        keepalive 128;
    }
    server {
        listen %s http2;
        server_name %s;
        location / {
            grpc_pass grpcs://to-%s;
            grpc_ssl_certificate %s;
            grpc_ssl_certificate_key %s;
            grpc_ssl_trusted_certificate %s;
            grpc_ssl_verify on;
            grpc_ssl_name %s;
            grpc_ssl_session_reuse on;
        }
    }
`, c.Name, plan.Upstream(c), meshes.HostPort(w.Node.Local, meshes.OutboundPort), c.Name, c.Name, id.Files.Cert, id.Files.Key, id.Files.CA, c.Name)
				continue
			}
			fmt.Fprintf(&body, `
    upstream to-%s {
        server %s;
        keepalive 128;
    }
    server {
        listen %s;
        server_name %s;
        location / {
            proxy_pass https://to-%s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_ssl_certificate %s;
            proxy_ssl_certificate_key %s;
            proxy_ssl_trusted_certificate %s;
            proxy_ssl_verify on;
            proxy_ssl_name %s;
            proxy_ssl_session_reuse on;
        }
    }
`, c.Name, plan.Upstream(c), meshes.HostPort(w.Node.Local, meshes.OutboundPort), c.Name, c.Name, id.Files.Cert, id.Files.Key, id.Files.CA, c.Name)
		}
		if w.Port != 0 && tcp {
			fmt.Fprintf(&stream, `
    upstream app {
        server %s;
    }
    server {
        listen %s ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_client_certificate %s;
        ssl_verify_client on;
        proxy_pass app;
    }
`, meshes.HostPort(w.Node.Local, w.Port), meshes.HostPort(w.Node.Addr, meshes.InboundPort), id.Files.Cert, id.Files.Key, id.Files.CA)
		} else if w.Port != 0 && grpc {
			fmt.Fprintf(&body, `
    upstream app {
        server %s;
        keepalive 128;
    }
    server {
        listen %s ssl http2;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_client_certificate %s;
        ssl_verify_client on;
        location / {
            grpc_pass grpc://app;
        }
    }
`, meshes.HostPort(w.Node.Local, w.Port), meshes.HostPort(w.Node.Addr, meshes.InboundPort), id.Files.Cert, id.Files.Key, id.Files.CA)
		} else if w.Port != 0 {
			fmt.Fprintf(&body, `
    upstream app {
        server %s;
        keepalive 128;
    }
    server {
        listen %s ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_client_certificate %s;
        ssl_verify_client on;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
`, meshes.HostPort(w.Node.Local, w.Port), meshes.HostPort(w.Node.Addr, meshes.InboundPort), id.Files.Cert, id.Files.Key, id.Files.CA)
		}
		name := w.Name + "-nginx"
		dir := filepath.Join(env.Dir, name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, err
		}
		admin := meshes.HostPort(w.Node.Addr, meshes.AdminPort)
		modules, streams := "", ""
		if tcp {
			modules = "load_module " + StreamModule + ";\n"
			streams = "stream {\n    proxy_connect_timeout 2s;\n" + stream.String() + "}\n"
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
%s`, modules, user, filepath.Join(dir, "nginx.pid"), dir, dir, admin, body.String(), streams)
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
