package controlplane

import (
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshbench/meshbench/proxy/xds"
)

// ChangeKinds are the synthetic changes the propagation benchmark makes,
// one resource type each. Every change is real (a client that applies it
// runs a configuration that differs from the last) and changes no
// request's fate:
//   - listener: every listener's filters' stat_prefix;
//   - route: every route's name (in RDS route configurations, and in
//     inline ones, which are part of their listener: there a route change
//     reaches clients as a listener update, as in Envoy);
//   - cluster: every cluster's connect_timeout, by a microsecond;
//   - endpoint: every load assignment's localities' sub_zone.
var ChangeKinds = []string{"listener", "route", "cluster", "endpoint"}

// marks is how many changes of each kind have been made.
type marks map[string]int

// apply returns bundles with the changes made so far, leaving bundles
// (the compiled configuration, which may be the model's base) untouched.
func (m marks) apply(bundles map[string]*xds.Bundle) (map[string]*xds.Bundle, error) {
	if len(m) == 0 {
		return bundles, nil
	}
	out := make(map[string]*xds.Bundle, len(bundles))
	for node, b := range bundles {
		c := &xds.Bundle{VersionInfo: b.VersionInfo}
		for _, l := range b.Listeners {
			l = proto.Clone(l).(*listenerv3.Listener)
			if err := m.listener(l); err != nil {
				return nil, fmt.Errorf("node %s listener %s: %w", node, l.GetName(), err)
			}
			c.Listeners = append(c.Listeners, l)
		}
		for _, r := range b.Routes {
			r = proto.Clone(r).(*routev3.RouteConfiguration)
			m.routes(r)
			c.Routes = append(c.Routes, r)
		}
		for _, cl := range b.Clusters {
			if n := m["cluster"]; n > 0 {
				cl = proto.Clone(cl).(*clusterv3.Cluster)
				base := 5 * time.Second
				if cl.GetConnectTimeout() != nil {
					base = cl.GetConnectTimeout().AsDuration()
				}
				// Alternating +1µs/+0: each change differs from the last
				// and the timeout never drifts.
				cl.ConnectTimeout = durationpb.New(base + time.Duration(n%2)*time.Microsecond)
			}
			c.Clusters = append(c.Clusters, cl)
		}
		for _, e := range b.Endpoints {
			if n := m["endpoint"]; n > 0 {
				e = proto.Clone(e).(*endpointv3.ClusterLoadAssignment)
				for _, le := range e.GetEndpoints() {
					if le.Locality == nil {
						le.Locality = &corev3.Locality{}
					}
					le.Locality.SubZone = fmt.Sprintf("change-%d", n)
				}
			}
			c.Endpoints = append(c.Endpoints, e)
		}
		out[node] = c
	}
	return out, nil
}

// listener marks a listener's filters (stat_prefix, for a listener
// change) and its inline route configurations (for a route change).
func (m marks) listener(l *listenerv3.Listener) error {
	if m["listener"] == 0 && m["route"] == 0 {
		return nil
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			a := f.GetTypedConfig()
			if a == nil {
				continue
			}
			msg, err := a.UnmarshalNew()
			if err != nil {
				return err
			}
			if n := m["listener"]; n > 0 {
				fd := msg.ProtoReflect().Descriptor().Fields().ByName("stat_prefix")
				if fd != nil && fd.Kind() == protoreflect.StringKind {
					prefix, _, _ := strings.Cut(msg.ProtoReflect().Get(fd).String(), "~")
					msg.ProtoReflect().Set(fd, protoreflect.ValueOfString(fmt.Sprintf("%s~%d", prefix, n)))
				}
			}
			if hcm, ok := msg.(*hcmv3.HttpConnectionManager); ok {
				m.routes(hcm.GetRouteConfig())
			}
			packed, err := anypb.New(msg)
			if err != nil {
				return err
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed}
		}
	}
	return nil
}

// routes marks every route of a route configuration (for a route change).
func (m marks) routes(rc *routev3.RouteConfiguration) {
	n := m["route"]
	if n == 0 || rc == nil {
		return
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			r.Name = fmt.Sprintf("change-%d", n)
		}
	}
}
