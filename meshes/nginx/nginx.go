// Package nginx deploys nginx (Debian's nginx-light) as a reference sidecar
// data plane (the NGINX mesh pattern): one nginx beside each workload, with
// mutual TLS between them, rendered from the same topology, ports, timeouts
// and identities as the own mesh.
package nginx

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

type mesh struct {
	meshes.Binary
}

var (
	_ meshes.Mesh         = (*mesh)(nil)
	_ meshes.Availability = (*mesh)(nil)
	_ meshes.Versioned    = (*mesh)(nil)
)

// New returns the nginx mesh.
func New() meshes.Mesh {
	return &mesh{meshes.Binary{Name: "nginx", Package: "nginx-light", VersionArgs: []string{"-v"}}}
}

func (*mesh) Name() string { return "nginx" }

func (*mesh) Modes() []scenarios.Mode { return []scenarios.Mode{scenarios.Sidecar} }

// Deploy renders an nginx beside the client (outbound: plaintext from the
// app, mTLS to the peer, verified by name and CA) and one beside the server
// (inbound: mTLS required, then plaintext to the app), each with one worker
// and upstream keep-alive pools.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	cid, sid, err := meshes.IssuePair(env)
	if err != nil {
		return nil, err
	}
	client, server := env.Client, env.Server
	// Workers run as the user nginx switches to; their connections carry
	// its uid, which interception lets pass.
	user := "www-data"
	plan := meshes.PlanProxies(env, true, meshes.UserID(user))
	dep := &meshes.Deployment{Target: plan.Target, Redirects: plan.Redirects, MTLS: true}
	upstream := plan.Upstream
	sides := []struct {
		w    meshes.Workload
		body string
	}{
		{client, fmt.Sprintf(`
    upstream peer {
        server %s;
        keepalive 128;
    }
    server {
        listen %s;
        location / {
            proxy_pass https://peer;
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
`, upstream, meshes.HostPort(client.Node.Local, meshes.OutboundPort), cid.Files.Cert, cid.Files.Key, cid.Files.CA, server.Name)},
		{server, fmt.Sprintf(`
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
`, meshes.HostPort(server.Node.Local, server.Port), meshes.HostPort(server.Node.Addr, meshes.InboundPort), sid.Files.Cert, sid.Files.Key, sid.Files.CA)},
	}
	for _, side := range sides {
		name := side.w.Name + "-nginx"
		dir := filepath.Join(env.Dir, name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, err
		}
		admin := meshes.HostPort(side.w.Node.Addr, meshes.AdminPort)
		cfg := fmt.Sprintf(`# rendered by meshbench
user %s;
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
`, user, filepath.Join(dir, "nginx.pid"), dir, dir, admin, side.body)
		path := filepath.Join(env.Dir, name+".conf")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, meshes.Component{
			Name: name, Class: "proxy", Node: side.w.Node.Name,
			Command: "nginx", Args: []string{"-c", path, "-e", "stderr"},
			Ready: meshes.Probe{HTTPGet: "http://" + admin + "/ready"},
		})
	}
	return dep, nil
}
