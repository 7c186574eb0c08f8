package meshbench

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// Waypoints (proxy: {layer: l4, waypoint: true}), as ambient meshes build
// them: an L7 proxy per called service, on the node of the service's
// first pod, beside that node's L4 proxy. Callers' node proxies tunnel
// their connections to the service to its waypoint (HBONE, under the
// caller's identity). The waypoint ends each stream into an internal HTTP
// listener ("main"), where the service's L7 policy applies (routes,
// splits, retries, RBAC by the caller's identity, which the internal
// connection carries), and sends each request through an internal TCP
// listener per destination pod ("originate|<pod>") that tunnels it, under
// the waypoint's identity, to the pod's node. A node proxy then admits
// streams to its pods only from the waypoints that may send there.
const (
	// WaypointBase + i is the i-th service's waypoint's HBONE port, and
	// WaypointAdminBase + i its admin port: above the ports of the node
	// proxies on a node they share (meshes.SharedOutboundBase + slot, and
	// L4OutboundBase + MaxServices × slot + callee for up to
	// MaxServices × MaxReplicas slots).
	WaypointBase      = 20000
	WaypointAdminBase = 20100
)

// waypoints says every called service has a waypoint.
func (r *renderer) waypoints() bool { return r.l4() && r.tuning.Waypoint }

// checkWaypoints refuses what waypoints cannot carry.
func (r *renderer) checkWaypoints() error {
	if r.tcp() {
		return errors.New("proxy.waypoint: a waypoint is an L7 proxy, and protocol tcp has no requests for it")
	}
	for _, s := range r.env.Services {
		if len(s.Selects) > 0 {
			// Its selected services' TrafficTargets would be bypassed, as
			// a split's backends' are (SupportsPolicies).
			return errors.New("proxy.waypoint: a service selecting other services' pods is not supported with waypoints")
		}
	}
	for _, w := range r.env.Workloads() {
		for _, s := range r.env.Services {
			if w.Name == waypointName(s) {
				return fmt.Errorf("proxy.waypoint: workload %s has the name of service %s's waypoint: rename it", w.Name, s.Name)
			}
		}
	}
	return nil
}

// waypointName names svc's waypoint (its component and control-plane
// node).
func waypointName(svc meshes.Service) string { return "waypoint-" + svc.Name }

// waypointID is the identity of svc's waypoint: in the mesh's own
// namespace, as the node proxies', where no workload's can be.
func waypointID(svc meshes.Service) string {
	return identity.SPIFFEID(TrustDomain, SystemNamespace, waypointName(svc))
}

func (r *renderer) serviceIndex(svc meshes.Service) int {
	return slices.IndexFunc(r.env.Services, func(s meshes.Service) bool { return s.Name == svc.Name })
}

// waypointAddr is where svc's waypoint ends its callers' tunnels.
func (r *renderer) waypointAddr(svc meshes.Service) string {
	return meshes.HostPort(svc.ProxyNode().Addr, WaypointBase+r.serviceIndex(svc))
}

// hasWaypoint says whether svc has a waypoint: whether anything calls it.
// A service that only a split sends to is reached from the split
// service's waypoint, not through one of its own.
func (r *renderer) hasWaypoint(svc meshes.Service) bool { return len(r.env.Callers(svc.Name)) > 0 }

// directCallerIDs are the identities of the workloads that call svc by
// its name: its waypoint admits those only.
func (r *renderer) directCallerIDs(svc meshes.Service) []string {
	return workloadIDs(r.env.Callers(svc.Name))
}

// waypointReach are the services svc's waypoint sends to: svc, and those
// policy may send its requests to instead.
func (r *renderer) waypointReach(svc meshes.Service) []meshes.Service {
	out := []meshes.Service{svc}
	for _, alt := range r.env.Alternatives[svc.Name] {
		if i := slices.IndexFunc(r.env.Services, func(s meshes.Service) bool { return s.Name == alt }); i >= 0 && alt != svc.Name {
			out = append(out, r.env.Services[i])
		}
	}
	return out
}

// waypointsTo are the identities of the waypoints that send to svc's
// pods.
func (r *renderer) waypointsTo(svc meshes.Service) []string {
	var ids []string
	for _, s := range r.env.Services {
		if r.hasWaypoint(s) && slices.ContainsFunc(r.waypointReach(s), func(c meshes.Service) bool { return c.Name == svc.Name }) {
			ids = append(ids, waypointID(s))
		}
	}
	return ids
}

// podAddr names a pod in tunnels from waypoints, as ambient's pod IP and
// port do: the CONNECT authority its node proxy hands to it.
func podAddr(pod meshes.Workload) string { return meshes.HostPort(pod.Node.Addr, pod.Port) }

// waypoint renders svc's waypoint.
func (r *renderer) waypoint(svc meshes.Service) (meshes.Component, error) {
	name := waypointName(svc)
	id, err := r.issue(name, waypointID(svc))
	if err != nil {
		return meshes.Component{}, err
	}
	b := &xds.Bundle{}
	// The tunnels' end, handing each stream to the internal L7 listener
	// with its caller's identity.
	callers := r.directCallerIDs(svc)
	toMain := "main|" + svc.Name
	b.Listeners = append(b.Listeners, xds.HBONEListener("hbone", r.waypointAddr(svc),
		[]xds.Destination{{Name: svc.Name, Authorities: []string{svc.Authority()}, Cluster: toMain, Principals: callers}},
		withPeers(id, callers...), hboneStreams, tunnelEndKeepalive))
	b.Clusters = append(b.Clusters, xds.EDSCluster(toMain, connectTimeout, nil))
	b.Endpoints = append(b.Endpoints, xds.InternalLoadAssignment(toMain, xds.InternalEndpoint{Listener: "main", ID: svc.Authority()}))
	// The L7 listener: the service's routes (and its alternatives', which
	// a split sends to), its access policy.
	reach := r.waypointReach(svc)
	routes := outboundRoutes(reach, outboundCluster)
	routes.Name = "main"
	b.Listeners = append(b.Listeners, xds.Internal(xds.HTTPListener("main", "", corev3.TrafficDirection_INBOUND, false, routes, nil)))
	ms := r.service(svc)
	ms.Inbound = append(ms.Inbound, controlplane.ListenerRef{Node: name, Listener: "main"})
	// Each pod reached through a listener tunnelling to its node, one
	// pooled connection per node.
	for _, c := range reach {
		r.reaches(c, name, "main", outboundCluster(c), false)
		var eps []xds.InternalEndpoint
		for _, pod := range c.Pods() {
			node := pod.ProxyNode()
			tunnel := "hbone|" + node.Name
			if !slices.ContainsFunc(b.Clusters, func(cl *clusterv3.Cluster) bool { return cl.GetName() == tunnel }) {
				b.Clusters = append(b.Clusters, xds.WithMaxRequests(xds.WithHTTP2Keepalive(xds.WithHTTP2(
					xds.EDSCluster(tunnel, connectTimeout, withPeers(id, nodeID(node)))), tunnelKeepalive, tunnelKeepalive), hboneStreams))
				b.Endpoints = append(b.Endpoints, xds.LoadAssignment(tunnel, meshes.HostPort(node.Addr, TunnelPort)))
			}
			originate := "originate|" + pod.Name
			if !slices.ContainsFunc(eps, func(e xds.InternalEndpoint) bool { return e.Listener == originate }) {
				b.Listeners = append(b.Listeners, xds.Internal(xds.TunnelListener(originate, "", corev3.TrafficDirection_OUTBOUND, tunnel, podAddr(pod))))
			}
			eps = append(eps, xds.InternalEndpoint{Listener: originate, ID: podAddr(pod)})
		}
		cl := r.cluster(outboundCluster(c), nil)
		if len(eps) > 1 {
			cl = replicated(cl)
		}
		b.Clusters = append(b.Clusters, cl)
		b.Endpoints = append(b.Endpoints, xds.InternalLoadAssignment(outboundCluster(c), eps...))
	}
	admin := meshes.HostPort(svc.ProxyNode().Addr, WaypointAdminBase+r.serviceIndex(svc))
	return r.proxyComponentAt(name, svc.ProxyNode(), admin, b, id, 0)
}

// podDestinations are, for a node proxy under waypoints, a destination
// per pod of its group: streams naming the pod, from the waypoints that
// send to its service, go to that pod alone.
func (r *renderer) podDestinations(b *xds.Bundle, g meshes.ProxyGroup) []xds.Destination {
	var dests []xds.Destination
	for _, w := range g.Workloads {
		svc, ok := r.serviceOf(w)
		if !ok {
			continue
		}
		in := "inbound|" + strconv.Itoa(w.Port) + "|" + w.Name
		b.Clusters = append(b.Clusters, xds.EDSCluster(in, connectTimeout, nil))
		b.Endpoints = append(b.Endpoints, xds.LoadAssignment(in, meshes.NodeApp(w)))
		dests = append(dests, xds.Destination{Name: w.Name, Authorities: []string{podAddr(w)}, Cluster: in, Principals: r.waypointsTo(svc)})
	}
	return dests
}

// The waypoints' ports are clear of the shared nodes' per-pod ports.
const _ = uint(WaypointBase - (L4OutboundBase + scenarios.MaxServices*scenarios.MaxServices*scenarios.MaxReplicas))
