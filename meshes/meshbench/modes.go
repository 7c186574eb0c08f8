package meshbench

import (
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/xds"
)

// bundle is shorthand for a bundle of one listener, one cluster and its
// endpoints.
func bundle(l *listenerv3.Listener, c *clusterv3.Cluster, e *endpointv3.ClusterLoadAssignment) *xds.Bundle {
	return &xds.Bundle{Listeners: []*listenerv3.Listener{l}, Clusters: []*clusterv3.Cluster{c}, Endpoints: []*endpointv3.ClusterLoadAssignment{e}}
}

// workloadIdentities issues the client and the server their SPIFFE
// identities, each accepting only the other.
func (r *renderer) workloadIdentities() (clientTLS, serverTLS *xds.TLSFiles, err error) {
	client, server := r.env.Client, r.env.Server
	if clientTLS, err = r.issue(client.Name, workloadID(client), workloadID(server)); err != nil {
		return nil, nil, err
	}
	serverTLS, err = r.issue(server.Name, workloadID(server), workloadID(client))
	return clientTLS, serverTLS, err
}

// sidecar renders one proxy per workload: the client's sidecar takes the
// client's requests on its outbound listener and sends them over mutual TLS
// to the server's sidecar, whose inbound listener accepts only the client's
// identity and hands requests to the server on its node.
func (r *renderer) sidecar() (*meshes.Deployment, error) {
	client, server := r.env.Client, r.env.Server
	clientTLS, serverTLS, err := r.workloadIdentities()
	if err != nil {
		return nil, err
	}
	out, in := r.outboundCluster(), "inbound|"+strconv.Itoa(server.Port)
	// Explicit: the client dials its sidecar, which dials the server's
	// sidecar port. Transparent: the client dials the server; iptables in
	// the client's namespace sends that to its sidecar, which dials the
	// server's address too (its own traffic marked so it is not captured
	// again), and iptables in the server's namespace sends that to the
	// server's sidecar.
	upstream := meshes.HostPort(server.Node.Addr, InboundPort)
	target := r.target()
	var redirects []meshes.Redirect
	if r.env.Transparent {
		upstream = meshes.HostPort(server.Node.Addr, server.Port)
		target.URL = "http://" + upstream + "/"
		redirects = []meshes.Redirect{
			{Node: client.Node.Name, Outbound: true, ToPort: OutboundPort, ExcludeMark: ProxyMark},
			{Node: server.Node.Name, Port: server.Port, ToPort: InboundPort},
		}
	}
	// The outbound listener's downstream is the local app: its loopback
	// address says nothing useful to the server, so no X-Forwarded-For.
	clientSide := bundle(
		xds.HTTPListener("outbound", meshes.HostPort(client.Node.Local, OutboundPort), corev3.TrafficDirection_OUTBOUND, false,
			xds.Routes("outbound", []string{server.Name, r.authority()}, out), nil),
		xds.WithMark(xds.EDSCluster(out, connectTimeout, clientTLS), ProxyMark),
		xds.LoadAssignment(out, upstream))
	serverSide := bundle(
		xds.HTTPListener("inbound", meshes.HostPort(server.Node.Addr, InboundPort), corev3.TrafficDirection_INBOUND, true,
			xds.Routes("inbound", []string{"*"}, in), serverTLS),
		xds.EDSCluster(in, connectTimeout, nil),
		xds.LoadAssignment(in, meshes.HostPort(server.Node.Local, server.Port)))
	cc, err := r.proxyComponent(client.Name+"-sidecar", client.Node, clientSide)
	if err != nil {
		return nil, err
	}
	sc, err := r.proxyComponent(server.Name+"-sidecar", server.Node, serverSide)
	if err != nil {
		return nil, err
	}
	return &meshes.Deployment{Components: []meshes.Component{cc, sc}, Target: target, Redirects: redirects, MTLS: true}, nil
}

// perNode renders one shared proxy per node. The client node's proxy takes
// its workloads' requests, stamps the source workload's identity (removing
// any the app sent), and multiplexes them as HTTP/2 streams over one
// long-lived mutual-TLS connection to the server node's proxy, which
// accepts only node-proxy identities and hands requests to the workload.
func (r *renderer) perNode() (*meshes.Deployment, error) {
	client, server := r.env.Client, r.env.Server
	clientTLS, err := r.issue("node-"+client.Node.Name, nodeID(client.Node), nodeID(server.Node))
	if err != nil {
		return nil, err
	}
	serverTLS, err := r.issue("node-"+server.Node.Name, nodeID(server.Node), nodeID(client.Node))
	if err != nil {
		return nil, err
	}
	tunnel := "tunnel|" + server.Node.Name
	in := "inbound|" + strconv.Itoa(server.Port) + "||" + server.Name
	clientSide := bundle(
		xds.HTTPListener("outbound", meshes.HostPort(client.Node.Local, OutboundPort), corev3.TrafficDirection_OUTBOUND, false,
			xds.WithHeaders(xds.Routes("outbound", []string{server.Name, r.authority()}, tunnel),
				[]string{SourceHeader}, map[string]string{SourceHeader: workloadID(client)}), nil),
		xds.WithHTTP2(xds.EDSCluster(tunnel, connectTimeout, clientTLS)),
		xds.LoadAssignment(tunnel, meshes.HostPort(server.Node.Addr, TunnelPort)))
	serverSide := bundle(
		xds.HTTP2Listener("tunnel", meshes.HostPort(server.Node.Addr, TunnelPort), corev3.TrafficDirection_INBOUND,
			xds.Routes("tunnel", []string{server.Name, r.authority()}, in), serverTLS),
		xds.EDSCluster(in, connectTimeout, nil),
		xds.LoadAssignment(in, meshes.HostPort(server.Node.Local, server.Port)))
	cc, err := r.proxyComponent("node-proxy-"+client.Node.Name, client.Node, clientSide)
	if err != nil {
		return nil, err
	}
	sc, err := r.proxyComponent("node-proxy-"+server.Node.Name, server.Node, serverSide)
	if err != nil {
		return nil, err
	}
	return &meshes.Deployment{Components: []meshes.Component{cc, sc}, Target: r.target(), MTLS: true}, nil
}

// proxyless renders no proxy: the client's load generator routes in-process
// with the client bundle and dials the server's mutual-TLS port directly; a
// server workload linking the library serves that port.
func (r *renderer) proxyless() (*meshes.Deployment, error) {
	client, server := r.env.Client, r.env.Server
	clientTLS, serverTLS, err := r.workloadIdentities()
	if err != nil {
		return nil, err
	}
	out := r.outboundCluster()
	addr := meshes.HostPort(server.Node.Addr, ProxylessPort)
	clientPath, err := r.writeBundle(client.Name+"-proxyless", bundle(
		xds.HTTPListener("outbound", "0.0.0.0:0", corev3.TrafficDirection_OUTBOUND, false,
			xds.Routes("outbound", []string{server.Name, r.authority()}, out), nil),
		xds.EDSCluster(out, connectTimeout, clientTLS),
		xds.LoadAssignment(out, addr)))
	if err != nil {
		return nil, err
	}
	// The server's bundle needs a cluster only because the subset wants a
	// route; the library serves the listener and never uses the route.
	serverPath, err := r.writeBundle(server.Name+"-proxyless", bundle(
		xds.HTTPListener("inbound", addr, corev3.TrafficDirection_INBOUND, true,
			xds.Routes("inbound", []string{"*"}, "inbound|local"), serverTLS),
		xds.EDSCluster("inbound|local", connectTimeout, nil),
		xds.LoadAssignment("inbound|local", meshes.HostPort(server.Node.Local, server.Port))))
	if err != nil {
		return nil, err
	}
	srv := meshes.Component{
		Name:  server.Name + "-proxyless",
		Class: "app",
		Node:  server.Node.Name,
		Args:  []string{"workload", "server", "--xds", serverPath, "--payload-size", strconv.Itoa(r.env.Server.PayloadSize), "--delay", r.env.Server.ServiceTime.String()},
		Ready: meshes.Probe{TCP: addr},
	}
	return &meshes.Deployment{
		Components: []meshes.Component{srv},
		OwnServer:  true,
		MTLS:       true,
		Target: meshes.Target{
			URL:        "http://" + r.authority() + "/",
			ClientArgs: []string{"--xds", clientPath},
		},
	}, nil
}
