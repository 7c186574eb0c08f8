// Package meshbench deploys meshbench's own proxy (package proxy) as a mesh.
// This scope is the sidecar mode: one proxy beside the client and
// one beside the server, the client dialing its sidecar explicitly.
package meshbench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/scenarios"
)

// Ports the sidecars use, as Istio's do.
const (
	AdminPort    = 15000
	OutboundPort = 15001
	InboundPort  = 15006
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

func (m *mesh) Version() string { return "meshbench-proxy " + m.version }

// Deploy renders one sidecar per workload: the client's sidecar takes the
// client's requests on its outbound listener and sends them to the server's
// sidecar inbound listener, which hands them to the server on its node.
func (m *mesh) Deploy(env meshes.Env, mode scenarios.Mode) (*meshes.Deployment, error) {
	if err := meshes.Supports(m, mode); err != nil {
		return nil, err
	}
	client, server := env.Client, env.Server
	authority := server.Name + ":" + strconv.Itoa(server.Port)

	clientCfg := proxy.Config{
		Node:  client.Name,
		Admin: meshes.HostPort(client.Node.Addr, AdminPort),
		Listeners: []proxy.Listener{{
			Name:      "outbound",
			Address:   meshes.HostPort(client.Node.Local, OutboundPort),
			Direction: proxy.Outbound,
			// The downstream is the local app: its loopback address says
			// nothing useful to the server.
			ForwardedFor: proxy.ForwardedNone,
			VirtualHosts: []proxy.VirtualHost{{
				Name:    server.Name,
				Domains: []string{server.Name, authority},
				Routes:  []proxy.Route{{Name: "default", Cluster: "outbound|" + server.Name}},
			}},
		}},
		Clusters: []proxy.Cluster{{
			Name:      "outbound|" + server.Name,
			Endpoints: []proxy.Endpoint{{Address: meshes.HostPort(server.Node.Addr, InboundPort)}},
		}},
	}
	serverCfg := proxy.Config{
		Node:  server.Name,
		Admin: meshes.HostPort(server.Node.Addr, AdminPort),
		Listeners: []proxy.Listener{{
			Name:      "inbound",
			Address:   meshes.HostPort(server.Node.Addr, InboundPort),
			Direction: proxy.Inbound,
			VirtualHosts: []proxy.VirtualHost{{
				Name:    "inbound",
				Domains: []string{"*"},
				Routes:  []proxy.Route{{Name: "default", Cluster: "inbound|" + server.Name}},
			}},
		}},
		Clusters: []proxy.Cluster{{
			Name:      "inbound|" + server.Name,
			Endpoints: []proxy.Endpoint{{Address: meshes.HostPort(server.Node.Local, server.Port)}},
		}},
	}
	var comps []meshes.Component
	for _, side := range []struct {
		w   meshes.Workload
		cfg proxy.Config
	}{{client, clientCfg}, {server, serverCfg}} {
		name := side.w.Name + "-sidecar"
		path := filepath.Join(env.Dir, name+".json")
		if err := writeConfig(path, side.cfg); err != nil {
			return nil, err
		}
		comps = append(comps, meshes.Component{
			Name:  name,
			Class: "proxy",
			Node:  side.w.Node.Name,
			Args:  []string{"proxy", "--config", path},
			Ready: meshes.Probe{HTTPGet: "http://" + side.cfg.Admin + "/ready"},
		})
	}
	return &meshes.Deployment{
		Components: comps,
		Target: meshes.Target{
			URL:  "http://" + meshes.HostPort(client.Node.Local, OutboundPort) + "/",
			Host: authority,
		},
	}, nil
}

func writeConfig(path string, cfg proxy.Config) error {
	// Validate here so that a rendering bug fails the deployment with the
	// reason instead of a proxy process that exits at start.
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("render %s: %w", filepath.Base(path), err)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
