package meshbench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/xds"
)

// proxylessGRPC renders no proxy and none of meshbench's data-plane code
// in the workloads: every workload is grpc-go's own xDS client and server
// (gRFC A27 and A36), configured only by an xDS bootstrap file and the
// control plane. A caller's channel to xds:///callee:port resolves the
// callee's API listener, cluster and endpoint, over mutual TLS from the
// bootstrap's certificate provider that accepts only the callee's SPIFFE
// ID; each service's xDS server serves its listener under RBAC allowing
// its callers' IDs. It proves the control plane against an xDS client
// nobody here wrote.
func (r *renderer) proxylessGRPC() (*meshes.Deployment, error) {
	entry := r.env.Entry()
	dep := &meshes.Deployment{
		// The client's channel target is xds:///<Host>.
		Target: meshes.Target{URL: "http://" + entry.Authority() + "/", Host: entry.Authority()},
		Apps:   meshes.CallsVia(r.env, func(meshes.Workload, meshes.Service) string { return "" }),
		MTLS:   true,
	}
	for _, w := range r.env.Workloads() {
		id, err := r.issue(w.Name, workloadID(w))
		if err != nil {
			return nil, err
		}
		b := &xds.Bundle{}
		for _, c := range r.env.Reachable(w) {
			name := outboundCluster(c)
			b.Listeners = append(b.Listeners, xds.GRPCClientListener(c.Authority(), name))
			b.Clusters = append(b.Clusters, xds.GRPCCluster(name, workloadID(c.Workload)))
			b.Endpoints = append(b.Endpoints, xds.GRPCLoadAssignment(name, meshes.HostPort(c.Node.Addr, c.Port)))
		}
		svc, isService := r.serviceOf(w)
		// The server listens on its node's address, which names its
		// listener resource (grpc-go asks for the address it listens on).
		listen := meshes.HostPort(w.Node.Addr, w.Port)
		if isService {
			l, err := xds.GRPCServerListener(listen, r.callerIDs(svc))
			if err != nil {
				return nil, err
			}
			b.Listeners = append(b.Listeners, l)
		}
		args, err := r.grpcArgs(w.Name+"-grpc", b, id)
		if err != nil {
			return nil, err
		}
		if !isService {
			dep.Target.ClientArgs = args
			continue
		}
		// Ready once the xDS server serves (it accepts connections before
		// it has its listener, and closes them).
		ready := meshes.HostPort(w.Node.Addr, AdminPort)
		app := dep.Apps[w.Name]
		app.Args = append(args, "--listen", listen, "--ready-listen", ready)
		app.Ready = &meshes.Probe{HTTPGet: "http://" + ready + "/ready"}
		dep.Apps[w.Name] = app
	}
	return dep, nil
}

// grpcArgs writes a grpc-go workload's bundle as its node's base
// configuration at the control plane, and its xDS bootstrap, and returns
// the workload's flags.
func (r *renderer) grpcArgs(node string, b *xds.Bundle, id xds.TLSFiles) ([]string, error) {
	data, err := b.Marshal()
	if err == nil {
		_, err = xds.DecodeAny(data)
	}
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", node, err)
	}
	path := filepath.Join(r.env.Dir, node+".xds.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, err
	}
	r.model.Nodes[node] = filepath.Base(path)
	r.model.GRPC = append(r.model.GRPC, node)
	boot, err := xds.GRPCBootstrap(r.xdsAddr(), node, id)
	if err != nil {
		return nil, err
	}
	bootPath := filepath.Join(r.env.Dir, node+".bootstrap.json")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		return nil, err
	}
	return []string{"--grpc-xds-bootstrap", bootPath}, nil
}
