package meshbench

import (
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// outboundRoutes is a route configuration with one virtual host per callee,
// each sending to cluster(callee); a replicated callee's retries a failed
// connection on another pod (see replicatedRetry).
func outboundRoutes(callees []meshes.Service, cluster func(meshes.Service) string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "outbound"}
	for _, c := range callees {
		vhs := xds.Routes(c.Name, domains(c), cluster(c)).VirtualHosts
		if len(c.Replicas) > 0 {
			for _, rt := range vhs[0].Routes {
				rt.GetRoute().RetryPolicy = replicatedRetry()
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vhs...)
	}
	return rc
}

// replicatedRetry is the own mesh's retry policy toward a service with
// several pods, as Istio's default: two more attempts after a connection
// failure, a reset or a 503 (a node proxy's answer when its pod's
// application is gone), each on another pod than the last.
func replicatedRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: "connect-failure,reset,retriable-status-codes", RetriableStatusCodes: []uint32{503},
		NumRetries: wrapperspb.UInt32(2)}
}

// tunnelKeepalive is the HTTP/2 PING interval and timeout of a node
// proxy's tunnel to a replicated service's nodes.
const tunnelKeepalive = time.Second

// tunnelEndKeepalive is the PING interval and timeout of an L4 tunnel's
// receiving end: a live sender pings it every tunnelKeepalive, so its own
// PINGs go only to a sender gone silent, whose streams (and the pods'
// connections they carry) then end within twice this.
const tunnelEndKeepalive = 5 * time.Second

// replicated is a cluster of a replicated service's pods: least request
// (power of two choices weighted by each pod's latency EWMA, as Istio's
// default LEAST_REQUEST and Linkerd's peak EWMA: a slow pod is routed
// around), and a pod ejected after 3 gateway failures in a row (connect
// failures, resets, 502-504) or 5 5xx, for 5 s at first (longer each time
// again), up to half of the pods: a killed pod is left alone while it is
// replaced.
func replicated(c *clusterv3.Cluster) *clusterv3.Cluster {
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(5),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(3),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		BaseEjectionTime:                   durationpb.New(5 * time.Second),
		MaxEjectionPercent:                 wrapperspb.UInt32(50),
	}
	return c
}

// upstreamOf says where a caller's cluster for a callee connects (each of
// its pods) and whose identity it accepts there.
type upstreamOf struct {
	addr func(meshes.Workload) string
	id   func(meshes.Workload) string
}

// toWorkload is a callee pod's workload identity at addr.
func toWorkload(addr func(meshes.Workload) string) upstreamOf {
	return upstreamOf{addr: addr, id: workloadID}
}

// addOutbound adds to b, for caller's proxy (or library), a cluster and its
// endpoint per callee, mutual TLS with caller's identity accepting only the
// callee's (up.id), and the outbound listener at listen routing to them.
func (r *renderer) addOutbound(b *xds.Bundle, node, listener, listen string, callees []meshes.Service, id xds.TLSFiles, up upstreamOf, mark bool) *listenerv3.Listener {
	if len(callees) == 0 {
		return nil
	}
	var l *listenerv3.Listener
	if r.tcp() {
		// A TCP caller has one callee (the client's entry: TCP services
		// call nothing), so the listener needs no routing.
		l = xds.TCPListener(listener, listen, corev3.TrafficDirection_OUTBOUND, outboundCluster(callees[0]), nil)
	} else {
		routes := outboundRoutes(callees, outboundCluster)
		routes.Name = listener
		l = xds.HTTPListener(listener, listen, corev3.TrafficDirection_OUTBOUND, false, routes, nil)
	}
	b.Listeners = append(b.Listeners, l)
	for _, c := range callees {
		name := outboundCluster(c)
		var addrs, peers []string
		for _, pod := range c.Pods() {
			if a := up.addr(pod); !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
			if p := up.id(pod); !slices.Contains(peers, p) {
				peers = append(peers, p)
			}
		}
		cl := r.cluster(name, withPeers(id, peers...))
		if mark {
			cl = xds.WithMark(cl, ProxyMark)
		}
		if len(addrs) > 1 {
			cl = replicated(cl)
		}
		b.Clusters = append(b.Clusters, cl)
		b.Endpoints = append(b.Endpoints, xds.LoadAssignment(name, addrs...))
		if !r.tcp() {
			r.reaches(c, node, listener, name, false)
		}
	}
	return l
}

// podsOwn takes a listener on a shared node's port of pod w from w alone:
// the node proxy knows the calling pod by the port it is dialled on (its
// identity, its routes), so no other source may dial that port. ztunnel
// knows it by the socket it opens in the pod's own network namespace;
// here the ports are the node's, on the platform's network. A pod with
// no network of its own (the loopback platform, where its Local address
// is its Addr) connects from 127.0.0.1 like every other: no source tells
// the pods apart there.
func podsOwn(l *listenerv3.Listener, w meshes.Workload) *listenerv3.Listener {
	if l == nil || !w.OwnSource() {
		return l
	}
	return xds.WithSources(l, w.Node.Addr)
}

// tcp says the load is TCP: listeners forward connections, not requests,
// and policy has no routes to change.
func (r *renderer) tcp() bool { return r.env.Protocol == scenarios.ProtocolTCP }

// cluster is an EDS cluster whose connections are HTTP/2 when the load is
// (http2, grpc: the protocol stays the same end to end, as gRPC needs).
func (r *renderer) cluster(name string, tls *xds.TLSFiles) *clusterv3.Cluster {
	c := xds.EDSCluster(name, connectTimeout, tls)
	if r.env.Protocol == scenarios.ProtocolHTTP2 || r.env.Protocol == scenarios.ProtocolGRPC {
		c = xds.WithHTTP2(c)
	}
	return c
}

// addInboundTCP adds the listener at addr that forwards connections of
// peers (mutual TLS) to the app of svc's pod at app, and the app's
// cluster.
func (r *renderer) addInboundTCP(b *xds.Bundle, listener, addr string, svc meshes.Service, pod meshes.Workload, app string, tls *xds.TLSFiles) {
	in := "inbound|" + strconv.Itoa(svc.Port)
	if listener != "inbound" {
		in += "|" + pod.Name // one of a shared node's pods
	}
	b.Listeners = append(b.Listeners, xds.TCPListener(listener, addr, corev3.TrafficDirection_INBOUND, in, tls))
	b.Clusters = append(b.Clusters, xds.EDSCluster(in, connectTimeout, nil))
	b.Endpoints = append(b.Endpoints, xds.LoadAssignment(in, app))
}

// addInbound adds to b the service's inbound listener at addr (mutual TLS
// with its identity, accepting only its callers) and the cluster of its
// local application.
func (r *renderer) addInbound(b *xds.Bundle, node, addr string, svc meshes.Service, pod meshes.Workload, id xds.TLSFiles) {
	if r.tcp() {
		r.addInboundTCP(b, "inbound", addr, svc, pod, meshes.HostPort(pod.Node.Local, pod.Port), withPeers(id, r.callerIDs(svc)...))
		return
	}
	in := "inbound|" + strconv.Itoa(svc.Port)
	b.Listeners = append(b.Listeners, xds.HTTPListener("inbound", addr, corev3.TrafficDirection_INBOUND, true,
		xds.Routes("inbound", []string{"*"}, in), withPeers(id, r.callerIDs(svc)...)))
	b.Clusters = append(b.Clusters, r.cluster(in, nil))
	b.Endpoints = append(b.Endpoints, xds.LoadAssignment(in, meshes.HostPort(pod.Node.Local, pod.Port)))
	ms := r.service(svc)
	ms.Inbound = append(ms.Inbound, controlplane.ListenerRef{Node: node, Listener: "inbound"})
}

// serviceOf is the service w is a pod of, if any.
func (r *renderer) serviceOf(w meshes.Workload) (meshes.Service, bool) { return r.env.ServiceOf(w) }

// sidecar renders one proxy per workload. A caller's sidecar takes the
// app's requests on its outbound listener and sends them over mutual TLS to
// the callee's sidecar, whose inbound listener accepts only the callee's
// callers and hands requests to the app on its node. Explicit: apps dial
// their sidecar's outbound port, which dials the callee sidecar's inbound
// port. Transparent: apps dial their callees; iptables sends that to the
// caller's sidecar, which dials the callee's address too (its own traffic
// marked so it is not captured again), and iptables on the callee's node
// sends that to the callee's sidecar.
func (r *renderer) sidecar() (*meshes.Deployment, error) {
	plan := meshes.PlanProxies(r.env, scenarios.Sidecar, meshes.Exclusion{Mark: ProxyMark})
	dep := &meshes.Deployment{Target: plan.Target, Apps: plan.Apps, Redirects: plan.Redirects, MTLS: true}
	// Where the control plane runs on the client's node (no node of its
	// own), the client's sidecar intercepts its outbound traffic: its
	// metrics scrapes pass as the sidecar's own.
	r.model.MetricsMark = ProxyMark
	for _, w := range r.env.Workloads() {
		id, err := r.issue(w.Name, workloadID(w))
		if err != nil {
			return nil, err
		}
		b := &xds.Bundle{}
		// The outbound listener's downstream is the local app: its
		// loopback address says nothing useful upstream, so no XFF.
		node := w.Name + "-sidecar"
		r.addOutbound(b, node, "outbound", meshes.HostPort(w.Node.Local, OutboundPort), r.env.Reachable(w), id, toWorkload(plan.Upstream), true)
		if svc, ok := r.serviceOf(w); ok {
			r.addInbound(b, node, meshes.HostPort(w.Node.Addr, InboundPort), svc, w, id)
		}
		c, err := r.proxyComponent(node, w.Node, b, id, ProxyMark)
		if err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, c)
	}
	return dep, nil
}

// perNode renders one shared proxy per node. A calling node's proxy takes
// its workloads' requests (each on a port of its own when the node holds
// several pods), stamps the source workload's identity (removing any the
// app sent), and multiplexes them as HTTP/2 streams over one long-lived
// mutual-TLS connection per peer node to that node's proxy, which accepts
// only the node proxies that call it and hands requests to the workload
// the authority names. Apps dial their node's proxy explicitly.
func (r *renderer) perNode() (*meshes.Deployment, error) {
	dep := &meshes.Deployment{Target: r.target(), Apps: meshes.CallsVia(r.env, meshes.ViaNode), MTLS: true}
	for _, g := range r.env.ProxyGroups(scenarios.PerNode) {
		id, err := r.issue("node-"+g.Node.Name, nodeID(g.Node))
		if err != nil {
			return nil, err
		}
		b := &xds.Bundle{}
		node := "node-proxy-" + g.Node.Name
		// A shared node's proxy has a listener per pod, named for it.
		named := func(kind string, w meshes.Workload) string {
			if g.Shared {
				return kind + "-" + w.Name
			}
			return kind
		}
		if r.tcp() {
			// TCP has no requests to multiplex over a tunnel: each
			// connection is carried over its own mutual-TLS connection
			// between the node proxies, to the callee's inbound port.
			toNode := upstreamOf{addr: meshes.NodeInbound, id: func(pod meshes.Workload) string { return nodeID(pod.ProxyNode()) }}
			for _, w := range g.Workloads {
				podsOwn(r.addOutbound(b, node, named("outbound", w), meshes.NodeOutbound(w), r.env.Reachable(w), id, toNode, false), w)
				if svc, ok := r.serviceOf(w); ok {
					r.addInboundTCP(b, named("inbound", w), meshes.NodeInbound(w), svc, w, meshes.NodeApp(w), withPeers(id, r.nodePeers(svc)...))
				}
			}
			c, err := r.proxyComponent(node, g.Node, b, id, 0)
			if err != nil {
				return nil, err
			}
			dep.Components = append(dep.Components, c)
			continue
		}
		// One cluster per callee node, or per callee whose pods are on
		// several nodes (its pods' nodes).
		tunnel := func(c meshes.Service) string {
			for _, pod := range c.Replicas {
				if pod.ProxyNode().Name != c.ProxyNode().Name {
					return "tunnel|" + c.Name
				}
			}
			return "tunnel|" + c.ProxyNode().Name
		}
		seen := map[string]bool{}
		for _, w := range g.Workloads {
			callees := r.env.Reachable(w)
			if len(callees) == 0 {
				continue
			}
			ln := named("outbound", w)
			routes := outboundRoutes(callees, tunnel)
			routes.Name = ln
			b.Listeners = append(b.Listeners, podsOwn(xds.HTTPListener(ln, meshes.NodeOutbound(w), corev3.TrafficDirection_OUTBOUND, false,
				xds.WithHeaders(routes, []string{SourceHeader}, map[string]string{SourceHeader: workloadID(w)}), nil), w))
			for _, c := range callees {
				r.reaches(c, node, ln, tunnel(c), true)
				if seen[tunnel(c)] {
					continue
				}
				seen[tunnel(c)] = true
				var peers, addrs []string
				for _, pod := range c.Pods() {
					if a := meshes.HostPort(pod.ProxyNode().Addr, TunnelPort); !slices.Contains(addrs, a) {
						peers, addrs = append(peers, nodeID(pod.ProxyNode())), append(addrs, a)
					}
				}
				cl := xds.WithHTTP2(xds.EDSCluster(tunnel(c), connectTimeout, withPeers(id, peers...)))
				if len(addrs) > 1 {
					// A silent pod's node (a partition) holds every
					// stream sent to it: notice it in about 2 s, fail
					// them and retry them on the others.
					cl = replicated(xds.WithHTTP2Keepalive(cl, tunnelKeepalive, tunnelKeepalive))
				}
				b.Clusters = append(b.Clusters, cl)
				b.Endpoints = append(b.Endpoints, xds.LoadAssignment(tunnel(c), addrs...))
			}
		}
		// The tunnel's end: a virtual host per service with pods here,
		// sending to them.
		routes := &routev3.RouteConfiguration{Name: "tunnel"}
		var peers []string
		served := map[string]bool{}
		for _, w := range g.Workloads {
			svc, ok := r.serviceOf(w)
			if !ok || served[svc.Name] {
				continue
			}
			served[svc.Name] = true
			for _, p := range r.nodePeers(svc) {
				if !slices.Contains(peers, p) {
					peers = append(peers, p)
				}
			}
			in := "inbound|" + strconv.Itoa(svc.Port) + "||" + svc.Name
			ref := controlplane.ListenerRef{Node: node, Listener: "tunnel", SourceHeader: SourceHeader}
			if g.Shared {
				ref.Cluster = in // the tunnel takes other services' requests too
			}
			ms := r.service(svc)
			ms.Inbound = append(ms.Inbound, ref)
			routes.VirtualHosts = append(routes.VirtualHosts, xds.Routes(svc.Name, domains(svc), in).VirtualHosts...)
			var apps []string
			for _, pod := range g.Workloads {
				if pod.Account() == svc.Name {
					apps = append(apps, meshes.NodeApp(pod))
				}
			}
			b.Clusters = append(b.Clusters, r.cluster(in, nil))
			b.Endpoints = append(b.Endpoints, xds.LoadAssignment(in, apps...))
		}
		if len(routes.VirtualHosts) > 0 {
			b.Listeners = append(b.Listeners, xds.HTTP2Listener("tunnel", meshes.HostPort(g.Node.Addr, TunnelPort), corev3.TrafficDirection_INBOUND,
				routes, withPeers(id, peers...)))
		}
		c, err := r.proxyComponent(node, g.Node, b, id, 0)
		if err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, c)
	}
	return dep, nil
}

// l4Outbound is where w's L4 node proxy takes w's connections to its i-th
// callee: a proxy that reads no authority has a port per callee, on the
// node's loopback address, or, for a pod on a shared node, on that node's
// address with room for each pod's callees.
func l4Outbound(w meshes.Workload, i int) string {
	if w.Shared() {
		return meshes.HostPort(w.Host.Addr, L4OutboundBase+w.Slot*scenarios.MaxServices+i)
	}
	return meshes.HostPort(w.Node.Local, L4OutboundBase+i)
}

// viaL4 dials the caller's L4 node proxy's port for callee.
func (r *renderer) viaL4(caller meshes.Workload, callee meshes.Service) string {
	return l4Outbound(caller, slices.IndexFunc(r.env.Callees(caller), func(s meshes.Service) bool { return s.Name == callee.Name }))
}

// hboneStreams bounds the CONNECT streams of one tunnel connection: each
// carries a workload connection for its whole life, and the sending node
// proxy's pool waits for a free stream rather than open a second
// connection (strict limits), so a connection past the bound would fail
// at its connect timeout. A workload's connections to all its callees on
// a peer node share one tunnel connection, so the bound is the most
// connections a scenario's load generator opens (scenarios.MaxConnections)
// toward each of the most callees a workload has (scenarios.MaxServices).
const hboneStreams = scenarios.MaxServices * scenarios.MaxConnections

// perNodeL4 renders one L4 proxy per node, as ambient meshes build it
// (ztunnel). A calling node's proxy takes each of its workloads'
// connections on the port for the callee and carries it, unread, as an
// HTTP/2 CONNECT stream naming the callee's authority over one pooled
// mutual-TLS connection per workload to each node with the
// callee's pods, presenting the workload's own identity. The callee's
// node proxy admits a stream only from the callee's callers (RBAC by
// source identity and authority) and hands its bytes to a local pod of
// the callee. No request is parsed on the way: no L7 policy, and a
// replicated callee's pods are chosen per connection, not per request.
func (r *renderer) perNodeL4() (*meshes.Deployment, error) {
	if r.waypoints() {
		if err := r.checkWaypoints(); err != nil {
			return nil, err
		}
	}
	entry := r.env.Entry()
	dep := &meshes.Deployment{
		Target: meshes.Target{URL: "http://" + l4Outbound(r.env.Client, 0) + "/", Host: entry.Authority()},
		Apps:   meshes.CallsVia(r.env, r.viaL4),
		MTLS:   true,
	}
	for _, g := range r.env.ProxyGroups(scenarios.PerNode) {
		nid, err := r.issue("node-"+g.Node.Name, nodeID(g.Node))
		if err != nil {
			return nil, err
		}
		b := &xds.Bundle{}
		node := "node-proxy-" + g.Node.Name
		for _, w := range g.Workloads {
			callees := r.env.Callees(w)
			if len(callees) == 0 {
				continue
			}
			id, err := r.issue(w.Name, workloadID(w))
			if err != nil {
				return nil, err
			}
			for i, c := range callees {
				var nodes, peers, addrs []string
				for _, pod := range c.Pods() {
					if a := meshes.HostPort(pod.ProxyNode().Addr, TunnelPort); !slices.Contains(addrs, a) {
						nodes = append(nodes, pod.ProxyNode().Name)
						peers, addrs = append(peers, nodeID(pod.ProxyNode())), append(addrs, a)
					}
				}
				// One cluster per workload and peer node, whichever callees
				// are there: a workload's streams to them share one pooled
				// connection, as ztunnel's pool is keyed by source identity
				// and destination node. A callee on several nodes has a
				// cluster of its own: its nodes' outlier detection counts
				// its streams alone.
				name := "hbone|" + w.Name + "|" + strings.Join(nodes, ",")
				if len(addrs) > 1 {
					name = "hbone|" + w.Name + "|" + c.Name + "@" + strings.Join(nodes, ",")
				}
				if r.waypoints() {
					// The callee's waypoint, whatever its pods' nodes.
					name = "hbone|" + w.Name + "|" + waypointName(c)
					peers, addrs = []string{waypointID(c)}, []string{r.waypointAddr(c)}
				}
				if !slices.ContainsFunc(b.Clusters, func(cl *clusterv3.Cluster) bool { return cl.GetName() == name }) {
					// Each stream holds one of the cluster's requests for
					// its connection's life: the bound is the streams its
					// peers' tunnel ends take.
					cl := xds.WithMaxRequests(xds.WithHTTP2Keepalive(xds.WithHTTP2(xds.EDSCluster(name, connectTimeout, withPeers(id, peers...))),
						tunnelKeepalive, tunnelKeepalive), uint32(hboneStreams*len(addrs)))
					if len(addrs) > 1 {
						cl = replicated(cl)
					}
					b.Clusters = append(b.Clusters, cl)
					b.Endpoints = append(b.Endpoints, xds.LoadAssignment(name, addrs...))
				}
				b.Listeners = append(b.Listeners, podsOwn(xds.TunnelListener("outbound|"+w.Name+"|"+c.Name, l4Outbound(w, i),
					corev3.TrafficDirection_OUTBOUND, name, c.Authority()), w))
			}
		}
		// The tunnels' end: a destination per service with pods here, or,
		// under waypoints, per pod.
		var dests []xds.Destination
		if r.waypoints() {
			dests = r.podDestinations(b, g)
		} else {
			dests = r.serviceDestinations(b, g)
		}
		var callers []string
		for _, d := range dests {
			for _, id := range d.Principals {
				if !slices.Contains(callers, id) {
					callers = append(callers, id)
				}
			}
		}
		if len(dests) > 0 {
			b.Listeners = append(b.Listeners, xds.HBONEListener("hbone", meshes.HostPort(g.Node.Addr, TunnelPort), dests,
				withPeers(nid, callers...), hboneStreams, tunnelEndKeepalive))
		}
		c, err := r.proxyComponent(node, g.Node, b, nid, 0)
		if err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, c)
	}
	for _, svc := range r.env.Services {
		if !r.waypoints() || !r.hasWaypoint(svc) {
			continue
		}
		c, err := r.waypoint(svc)
		if err != nil {
			return nil, err
		}
		dep.Components = append(dep.Components, c)
	}
	return dep, nil
}

// serviceDestinations are, for an L4 node proxy, a destination per
// service with pods in its group: streams naming the service, from its
// callers, go to one of its pods here.
func (r *renderer) serviceDestinations(b *xds.Bundle, g meshes.ProxyGroup) []xds.Destination {
	var dests []xds.Destination
	for _, w := range g.Workloads {
		svc, ok := r.serviceOf(w)
		if !ok || slices.ContainsFunc(dests, func(d xds.Destination) bool { return d.Name == svc.Name }) {
			continue
		}
		in := "inbound|" + strconv.Itoa(svc.Port) + "||" + svc.Name
		var apps []string
		for _, pod := range g.Workloads {
			if pod.Account() == svc.Name {
				apps = append(apps, meshes.NodeApp(pod))
			}
		}
		b.Clusters = append(b.Clusters, xds.EDSCluster(in, connectTimeout, nil))
		b.Endpoints = append(b.Endpoints, xds.LoadAssignment(in, apps...))
		dests = append(dests, xds.Destination{Name: svc.Name, Authorities: []string{svc.Authority()}, Cluster: in, Principals: r.callerIDs(svc)})
	}
	return dests
}

// nodePeers are the identities of the node proxies whose requests may
// reach svc.
func (r *renderer) nodePeers(svc meshes.Service) []string {
	var peers []string
	for _, caller := range r.env.Reachers(svc.Name) {
		if id := nodeID(caller.ProxyNode()); !slices.Contains(peers, id) {
			peers = append(peers, id)
		}
	}
	return peers
}

// proxyless renders no proxy: every workload links the library, which
// takes its configuration from the control plane. The client's load
// generator and each calling service route in-process with their outbound
// listener and dial their callees' mutual-TLS ports directly; each service
// serves its inbound listener, accepting only its callers, under its RBAC.
func (r *renderer) proxyless() (*meshes.Deployment, error) {
	dep := &meshes.Deployment{
		Target: meshes.Target{URL: "http://" + r.env.Entry().Authority() + "/"},
		Apps:   meshes.CallsVia(r.env, func(meshes.Workload, meshes.Service) string { return "" }),
		MTLS:   true,
	}
	port := func(pod meshes.Workload) string { return meshes.HostPort(pod.Node.Addr, ProxylessPort) }
	for _, w := range r.env.Workloads() {
		id, err := r.issue(w.Name, workloadID(w))
		if err != nil {
			return nil, err
		}
		b := &xds.Bundle{}
		node := w.Name + "-proxyless"
		r.addOutbound(b, node, "outbound", "0.0.0.0:0", r.env.Reachable(w), id, toWorkload(port), false)
		svc, isService := r.serviceOf(w)
		if isService {
			// The library serves the inbound listener itself and never
			// uses its route, which the subset requires.
			r.addInbound(b, node, port(w), svc, w, id)
		}
		args, err := r.libraryArgs(node, b, id)
		if err != nil {
			return nil, err
		}
		if !isService {
			dep.Target.ClientArgs = args
			continue
		}
		app, ok := dep.Apps[w.Name]
		if !ok { // a replica: its service's calls
			app = dep.Apps[w.Account()]
		}
		app.Args = args
		app.Ready = &meshes.Probe{TCP: port(w)}
		app.HTTPFaults = meshes.HostPort(w.Node.Addr, HTTPFaultsPort)
		dep.Apps[w.Name] = app
	}
	return dep, nil
}
