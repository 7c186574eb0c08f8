package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	accessv1alpha3 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/access/v1alpha3"
	specsv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/specs/v1alpha4"
	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshbench/meshbench/proxy/xds"
)

// The policy objects the control plane serves, by kind: SMI's and Gateway
// API's for mesh (GAMMA), in the upstream Go types.
var policyTypes = map[string]struct {
	apiVersion string
	typ        reflect.Type
}{
	"TrafficTarget":  {"access.smi-spec.io/v1alpha3", reflect.TypeFor[accessv1alpha3.TrafficTarget]()},
	"HTTPRouteGroup": {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.HTTPRouteGroup]()},
	"TCPRoute":       {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.TCPRoute]()},
	"TrafficSplit":   {"split.smi-spec.io/v1alpha4", reflect.TypeFor[splitv1alpha4.TrafficSplit]()},
	"HTTPRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.HTTPRoute]()},
	"GRPCRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.GRPCRoute]()},
}

// decodePolicies reads policy objects (JSON, as Kubernetes writes them).
func decodePolicies(raw []json.RawMessage) ([]any, error) {
	var out []any
	for i, r := range raw {
		var head struct{ APIVersion, Kind string }
		if err := json.Unmarshal(r, &head); err != nil {
			return nil, fmt.Errorf("policies[%d]: %w", i, err)
		}
		pt, ok := policyTypes[head.Kind]
		if !ok || pt.apiVersion != head.APIVersion {
			return nil, fmt.Errorf("policies[%d]: %s %s is not a policy kind meshbench's control plane serves", i, head.APIVersion, head.Kind)
		}
		v := reflect.New(pt.typ)
		dec := json.NewDecoder(strings.NewReader(string(r)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v.Interface()); err != nil {
			return nil, fmt.Errorf("policies[%d] (%s): %w", i, head.Kind, err)
		}
		out = append(out, v.Interface())
	}
	return out, nil
}

// compile is the model's base bundles with the policy objects applied:
// HTTPRoutes and GRPCRoutes replace the routes to their parent Services,
// TrafficSplits weigh the backends of the ones no route claims, and
// TrafficTargets put RBAC on their destinations' inbound listeners (deny
// by default once any TrafficTarget selects a destination, as SMI says).
// The base bundles are not changed.
func compile(m *Model, base map[string]*xds.Bundle, raw []json.RawMessage) (map[string]*xds.Bundle, error) {
	return compileWith(m, base, raw, "")
}

// Mutations break one translation on purpose: the conformance suite's
// check of itself (a suite that a broken mesh passes checks nothing).
const (
	// MutateRBACAllowAll makes every RBAC allow every request.
	MutateRBACAllowAll = "rbac-allow-all"
	// MutateSplitFirstBackend sends a split's traffic to its first
	// backend alone.
	MutateSplitFirstBackend = "split-first-backend"
)

// Mutations lists the mutations compileWith knows.
var Mutations = []string{MutateRBACAllowAll, MutateSplitFirstBackend}

// compileWith is compile with a mutation ("" for none).
func compileWith(m *Model, base map[string]*xds.Bundle, raw []json.RawMessage, mutation string) (map[string]*xds.Bundle, error) {
	implicit := m.DenyByDefault || slices.ContainsFunc(m.Services, func(s Service) bool { return len(s.Selects) > 0 })
	if len(raw) == 0 && !implicit {
		return base, nil
	}
	objs, err := decodePolicies(raw)
	if err != nil {
		return nil, err
	}
	c := &compiler{m: m, mutation: mutation, bundles: map[string]*xds.Bundle{}, services: map[string]*Service{}, groups: map[string]*specsv1alpha4.HTTPRouteGroup{}}
	for node, b := range base {
		c.bundles[node] = cloneBundle(b)
	}
	for i := range m.Services {
		c.services[m.Services[i].Name] = &m.Services[i]
	}
	routed := map[string]string{} // service -> the route object claiming it
	var targets []*accessv1alpha3.TrafficTarget
	for _, o := range objs {
		switch o := o.(type) {
		case *specsv1alpha4.HTTPRouteGroup:
			c.groups[o.Name] = o
		case *accessv1alpha3.TrafficTarget:
			targets = append(targets, o)
		case *gatewayv1.HTTPRoute:
			for _, parent := range serviceParents(o.Spec.ParentRefs) {
				routed[parent] = "HTTPRoute " + o.Name
			}
		case *gatewayv1.GRPCRoute:
			for _, parent := range serviceParents(o.Spec.ParentRefs) {
				routed[parent] = "GRPCRoute " + o.Name
			}
		}
	}
	// A service that selects others' workloads is split evenly over them
	// unless policy says otherwise.
	for _, svc := range m.Services {
		if len(svc.Selects) == 0 || routed[svc.Name] != "" || slices.ContainsFunc(objs, func(o any) bool {
			ts, ok := o.(*splitv1alpha4.TrafficSplit)
			return ok && ts.Spec.Service == svc.Name
		}) {
			continue
		}
		ts := &splitv1alpha4.TrafficSplit{}
		ts.Name, ts.Spec.Service = svc.Name+" (its selector)", svc.Name
		for _, b := range svc.Selects {
			ts.Spec.Backends = append(ts.Spec.Backends, splitv1alpha4.TrafficSplitBackend{Service: b, Weight: 1})
		}
		c.split(ts)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *splitv1alpha4.TrafficSplit:
			if by := routed[o.Spec.Service]; by != "" {
				c.fail("TrafficSplit %s: service %s is routed by %s; split it with the route's backendRefs", o.Name, o.Spec.Service, by)
				continue
			}
			c.split(o)
		case *gatewayv1.HTTPRoute:
			c.httpRoute(o)
		case *gatewayv1.GRPCRoute:
			c.grpcRoute(o)
		}
	}
	c.access(targets)
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	return c.bundles, nil
}

type compiler struct {
	m        *Model
	mutation string
	bundles  map[string]*xds.Bundle
	services map[string]*Service
	groups   map[string]*specsv1alpha4.HTTPRouteGroup
	errs     []error
}

func (c *compiler) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func cloneBundle(b *xds.Bundle) *xds.Bundle {
	out := &xds.Bundle{VersionInfo: b.VersionInfo}
	for _, l := range b.Listeners {
		out.Listeners = append(out.Listeners, proto.Clone(l).(*listenerv3.Listener))
	}
	for _, r := range b.Routes {
		out.Routes = append(out.Routes, proto.Clone(r).(*routev3.RouteConfiguration))
	}
	out.Clusters, out.Endpoints = b.Clusters, b.Endpoints // never changed
	return out
}

// service returns the model's service called name, or fails.
func (c *compiler) service(what, name string) *Service {
	s := c.services[name]
	if s == nil {
		c.fail("%s: the mesh has no service %q", what, name)
	}
	return s
}

// listener returns node's listener called name.
func (c *compiler) listener(node, name string) (*listenerv3.Listener, error) {
	b := c.bundles[node]
	if b == nil {
		return nil, fmt.Errorf("the mesh has no node %q", node)
	}
	for _, l := range b.Listeners {
		if l.GetName() == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("node %s has no listener %q", node, name)
}

// withHCM runs f on the HTTP connection manager of a listener and stores
// what f changed back into the listener.
func withHCM(l *listenerv3.Listener, f func(*hcmv3.HttpConnectionManager) error) error {
	for _, fc := range l.GetFilterChains() {
		for _, flt := range fc.GetFilters() {
			if flt.GetName() != xds.HTTPConnectionManager {
				continue
			}
			h := &hcmv3.HttpConnectionManager{}
			if err := flt.GetTypedConfig().UnmarshalTo(h); err != nil {
				return err
			}
			if err := f(h); err != nil {
				return err
			}
			a, err := anypb.New(h)
			if err != nil {
				return err
			}
			flt.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			return nil
		}
	}
	return fmt.Errorf("listener %s has no HTTP connection manager", l.GetName())
}

// editVirtualHost runs f on the virtual host ref names.
func (c *compiler) editVirtualHost(ref RouteRef, f func(*routev3.VirtualHost) error) error {
	l, err := c.listener(ref.Node, ref.Listener)
	if err != nil {
		return err
	}
	return withHCM(l, func(h *hcmv3.HttpConnectionManager) error {
		rc := h.GetRouteConfig()
		if rds := h.GetRds(); rds != nil {
			for _, r := range c.bundles[ref.Node].Routes {
				if r.GetName() == rds.GetRouteConfigName() {
					rc = r
				}
			}
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == ref.VirtualHost {
				return f(vh)
			}
		}
		return fmt.Errorf("node %s listener %s has no virtual host %q", ref.Node, ref.Listener, ref.VirtualHost)
	})
}

// backends turns a list of (service, weight) into a route action on the
// calling node: one cluster, or weighted clusters, each with the backend's
// authority where the node's routes need it (node proxies route by it).
func (c *compiler) backends(ref RouteRef, names []string, weights []uint32) (*routev3.RouteAction, error) {
	var cws []*routev3.WeightedCluster_ClusterWeight
	for i, name := range names {
		b := c.services[name]
		if b == nil {
			return nil, fmt.Errorf("the mesh has no service %q", name)
		}
		cluster := b.Clusters[ref.Node]
		if cluster == "" {
			return nil, fmt.Errorf("node %s cannot reach %s (no cluster for it)", ref.Node, name)
		}
		cw := &routev3.WeightedCluster_ClusterWeight{Name: cluster, Weight: wrapperspb.UInt32(weights[i])}
		if ref.RewriteAuthority {
			cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: b.Authority}
		}
		cws = append(cws, cw)
	}
	if len(cws) == 0 {
		return nil, errors.New("no backend has a weight above 0")
	}
	a := &routev3.RouteAction{}
	if len(cws) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cws[0].GetName()}
		if ref.RewriteAuthority {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: cws[0].GetHostRewriteLiteral()}
		}
		return a, nil
	}
	a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: cws}}
	return a, nil
}

// split weighs the routes to a TrafficSplit's root service among its
// backends, on every node that calls it.
func (c *compiler) split(ts *splitv1alpha4.TrafficSplit) {
	what := "TrafficSplit " + ts.Name
	root := c.service(what, ts.Spec.Service)
	if root == nil {
		return
	}
	if len(ts.Spec.Matches) > 0 {
		c.fail("%s: spec.matches is not supported by meshbench's control plane", what)
		return
	}
	var names []string
	var weights []uint32
	for _, b := range ts.Spec.Backends {
		if b.Weight > 0 {
			names = append(names, b.Service)
			weights = append(weights, uint32(b.Weight))
		}
	}
	if c.mutation == MutateSplitFirstBackend && len(ts.Spec.Backends) > 0 {
		names, weights = []string{ts.Spec.Backends[0].Service}, []uint32{1}
	}
	for _, ref := range root.Routes {
		a, err := c.backends(ref, names, weights)
		if err == nil {
			err = c.editVirtualHost(ref, func(vh *routev3.VirtualHost) error {
				for _, r := range vh.GetRoutes() {
					prev := r.GetRoute()
					next := proto.Clone(a).(*routev3.RouteAction)
					next.Timeout, next.RetryPolicy = prev.GetTimeout(), prev.GetRetryPolicy()
					r.Action = &routev3.Route_Route{Route: next}
				}
				return nil
			})
		}
		if err != nil {
			c.fail("%s: %v", what, err)
		}
	}
}

// serviceParents are the Services a GAMMA route attaches to.
func serviceParents(refs []gatewayv1.ParentReference) []string {
	var out []string
	for _, r := range refs {
		if (r.Group == nil || *r.Group == "" || *r.Group == "core") && r.Kind != nil && *r.Kind == "Service" {
			out = append(out, string(r.Name))
		}
	}
	return out
}

// backendRefs are a rule's backends' names and weights (default 1).
func backendRefs(refs []gatewayv1.BackendRef) ([]string, []uint32) {
	var names []string
	var weights []uint32
	for _, b := range refs {
		w := uint32(1)
		if b.Weight != nil {
			w = uint32(*b.Weight)
		}
		if w > 0 {
			names = append(names, string(b.Name))
			weights = append(weights, w)
		}
	}
	return names, weights
}

// ranked is a route with what GAMMA ranks matches by: exact paths first,
// then longer prefixes, then a method, then more header and query matches;
// rule order breaks ties.
type ranked struct {
	r                      *routev3.Route
	exact                  bool
	prefix, headers, query int
	method, regex          bool
	order                  int
}

func sortRoutes(rs []ranked) []*routev3.Route {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		switch {
		case a.exact != b.exact:
			return a.exact
		case a.regex != b.regex:
			return !a.regex
		case a.prefix != b.prefix:
			return a.prefix > b.prefix
		case a.method != b.method:
			return a.method
		case a.headers != b.headers:
			return a.headers > b.headers
		case a.query != b.query:
			return a.query > b.query
		}
		return a.order < b.order
	})
	out := make([]*routev3.Route, len(rs))
	for i, r := range rs {
		out[i] = r.r
	}
	return out
}

// replaceRoutes replaces the routes to each of parents (Services), on
// every node that calls it, with the ranked routes build makes for that
// node's virtual host.
func (c *compiler) replaceRoutes(what string, parents []gatewayv1.ParentReference, build func(RouteRef) ([]ranked, error)) {
	for _, parent := range serviceParents(parents) {
		svc := c.service(what, parent)
		if svc == nil {
			continue
		}
		for _, ref := range svc.Routes {
			rs, err := build(ref)
			if err != nil {
				c.fail("%s %v", what, err)
				return
			}
			routes := sortRoutes(rs)
			if err := c.editVirtualHost(ref, func(vh *routev3.VirtualHost) error { vh.Routes = routes; return nil }); err != nil {
				c.fail("%s: %v", what, err)
			}
		}
	}
}

// httpRoute replaces the routes to each parent Service with the route's
// rules, on every node that calls it.
func (c *compiler) httpRoute(hr *gatewayv1.HTTPRoute) {
	what := "HTTPRoute " + hr.Name
	c.replaceRoutes(what, hr.Spec.ParentRefs, func(ref RouteRef) ([]ranked, error) {
		var rs []ranked
		for i, rule := range hr.Spec.Rules {
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.HTTPRouteMatch{{}}
			}
			for _, m := range matches {
				r, err := c.httpRule(ref, rule, m)
				if err != nil {
					return nil, fmt.Errorf("rules[%d]: %w", i, err)
				}
				rs = append(rs, rankHTTP(r, m, len(rs)))
			}
		}
		return rs, nil
	})
}

func rankHTTP(r *routev3.Route, m gatewayv1.HTTPRouteMatch, order int) ranked {
	rk := ranked{r: r, headers: len(m.Headers), query: len(m.QueryParams), method: m.Method != nil, order: order}
	if p := m.Path; p != nil && p.Value != nil && p.Type != nil {
		switch *p.Type {
		case gatewayv1.PathMatchExact:
			rk.exact = true
		case gatewayv1.PathMatchRegularExpression:
			rk.regex = true
		default:
			rk.prefix = len(strings.TrimSuffix(*p.Value, "/")) + 1
		}
	} else {
		rk.prefix = 1 // "/"
	}
	return rk
}

// httpRule is the Envoy route of one HTTPRoute rule and one of its
// matches.
func (c *compiler) httpRule(ref RouteRef, rule gatewayv1.HTTPRouteRule, m gatewayv1.HTTPRouteMatch) (*routev3.Route, error) {
	r := &routev3.Route{Match: &routev3.RouteMatch{}}
	switch p := m.Path; {
	case p == nil || p.Value == nil:
		r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case p.Type != nil && *p.Type == gatewayv1.PathMatchExact:
		r.Match.PathSpecifier = &routev3.RouteMatch_Path{Path: *p.Value}
	case p.Type != nil && *p.Type == gatewayv1.PathMatchRegularExpression:
		r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: *p.Value}}
	default:
		// A PathPrefix matches whole segments; a trailing / is ignored.
		if prefix := strings.TrimSuffix(*p.Value, "/"); prefix == "" {
			r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			r.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix}
		}
	}
	for _, h := range m.Headers {
		r.Match.Headers = append(r.Match.Headers, headerMatcher(string(h.Name), h.Value, h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression))
	}
	for _, q := range m.QueryParams {
		sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: q.Value}}
		if q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression {
			sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: q.Value}}
		}
		r.Match.QueryParameters = append(r.Match.QueryParameters, &routev3.QueryParameterMatcher{
			Name: string(q.Name), QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}})
	}
	if m.Method != nil {
		r.Match.Headers = append(r.Match.Headers, headerMatcher(":method", string(*m.Method), false))
	}
	var redirect *routev3.RedirectAction
	var action *routev3.RouteAction
	names, weights := backendRefs(backendsOf(rule.BackendRefs))
	if len(names) > 0 {
		a, err := c.backends(ref, names, weights)
		if err != nil {
			return nil, err
		}
		action = a
	}
	for _, f := range rule.Filters {
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerChanges(f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerChanges(f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			var err error
			if redirect, err = redirectOf(f.RequestRedirect, m.Path); err != nil {
				return nil, err
			}
		case gatewayv1.HTTPRouteFilterURLRewrite:
			if action == nil {
				return nil, errors.New("URLRewrite needs backendRefs")
			}
			if err := rewriteOf(f.URLRewrite, action, m.Path); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("filter %s is not supported", f.Type)
		}
	}
	switch {
	case redirect != nil:
		r.Action = &routev3.Route_Redirect{Redirect: redirect}
		return r, nil
	case action == nil:
		return nil, errors.New("a rule needs backendRefs or a RequestRedirect filter")
	}
	if t := rule.Timeouts; t != nil && t.Request != nil {
		d, err := time.ParseDuration(string(*t.Request))
		if err != nil {
			return nil, fmt.Errorf("timeouts.request: %w", err)
		}
		action.Timeout = durationpb.New(d)
	}
	if rt := rule.Retry; rt != nil {
		p := &routev3.RetryPolicy{RetryOn: "connect-failure,reset"}
		if rt.Attempts != nil {
			p.NumRetries = wrapperspb.UInt32(uint32(*rt.Attempts))
		}
		for _, code := range rt.Codes {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(code))
		}
		if len(p.RetriableStatusCodes) > 0 {
			p.RetryOn += ",retriable-status-codes"
		}
		action.RetryPolicy = p
	}
	r.Action = &routev3.Route_Route{Route: action}
	return r, nil
}

func backendsOf(refs []gatewayv1.HTTPBackendRef) []gatewayv1.BackendRef {
	out := make([]gatewayv1.BackendRef, len(refs))
	for i, r := range refs {
		out[i] = r.BackendRef
	}
	return out
}

func headerMatcher(name, value string, regex bool) *routev3.HeaderMatcher {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}
	if regex {
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// headerChanges turns a Gateway API header filter into Envoy's additions
// (set replaces, add appends) and removals.
func headerChanges(f *gatewayv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string) {
	if f == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, h := range f.Set {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: string(h.Name), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, h := range f.Add {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: string(h.Name), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, f.Remove
}

func redirectOf(f *gatewayv1.HTTPRequestRedirectFilter, path *gatewayv1.HTTPPathMatch) (*routev3.RedirectAction, error) {
	rd := &routev3.RedirectAction{}
	if f.Scheme != nil {
		rd.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *f.Scheme}
	}
	if f.Hostname != nil {
		rd.HostRedirect = string(*f.Hostname)
	}
	if f.Port != nil {
		rd.PortRedirect = uint32(*f.Port)
	}
	if p := f.Path; p != nil {
		switch {
		case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
			rd.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *p.ReplaceFullPath}
		case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
			if !isPathPrefix(path) {
				return nil, errors.New("RequestRedirect ReplacePrefixMatch needs a PathPrefix match")
			}
			rd.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: *p.ReplacePrefixMatch}
		}
	}
	codes := map[int]routev3.RedirectAction_RedirectResponseCode{301: routev3.RedirectAction_MOVED_PERMANENTLY,
		302: routev3.RedirectAction_FOUND, 303: routev3.RedirectAction_SEE_OTHER, 307: routev3.RedirectAction_TEMPORARY_REDIRECT,
		308: routev3.RedirectAction_PERMANENT_REDIRECT}
	if f.StatusCode != nil {
		rd.ResponseCode = codes[*f.StatusCode]
	} else {
		rd.ResponseCode = routev3.RedirectAction_FOUND // Gateway API's default
	}
	return rd, nil
}

func isPathPrefix(path *gatewayv1.HTTPPathMatch) bool {
	return path != nil && path.Type != nil && *path.Type == gatewayv1.PathMatchPathPrefix
}

func rewriteOf(f *gatewayv1.HTTPURLRewriteFilter, a *routev3.RouteAction, path *gatewayv1.HTTPPathMatch) error {
	if f.Hostname != nil {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*f.Hostname)}
	}
	if p := f.Path; p != nil {
		switch {
		case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^.*$"}, Substitution: *p.ReplaceFullPath}
		case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
			if !isPathPrefix(path) {
				return errors.New("URLRewrite ReplacePrefixMatch needs a PathPrefix match")
			}
			a.PrefixRewrite = *p.ReplacePrefixMatch
		}
	}
	return nil
}

// grpcRoute replaces the routes to each parent Service with the route's
// rules: a method is a path (/package.Service/Method).
func (c *compiler) grpcRoute(gr *gatewayv1.GRPCRoute) {
	c.replaceRoutes("GRPCRoute "+gr.Name, gr.Spec.ParentRefs, func(ref RouteRef) ([]ranked, error) {
		var rs []ranked
		for i, rule := range gr.Spec.Rules {
			if len(rule.Filters) > 0 {
				return nil, fmt.Errorf("rules[%d]: filters on gRPC routes are not supported", i)
			}
			var refs []gatewayv1.BackendRef
			for _, b := range rule.BackendRefs {
				refs = append(refs, b.BackendRef)
			}
			names, weights := backendRefs(refs)
			a, err := c.backends(ref, names, weights)
			if err != nil {
				return nil, fmt.Errorf("rules[%d]: %w", i, err)
			}
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.GRPCRouteMatch{{}}
			}
			for _, m := range matches {
				rs = append(rs, grpcRule(a, m, len(rs)))
			}
		}
		return rs, nil
	})
}

// grpcRule is the ranked Envoy route of one GRPCRoute match, whose
// backends are a. GRPCRoute ranks by the characters of the matched
// service, then of the method, then by header matches (rank.prefix
// carries the first two).
func grpcRule(a *routev3.RouteAction, m gatewayv1.GRPCRouteMatch, order int) ranked {
	r := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: proto.Clone(a).(*routev3.RouteAction)}}
	rk := ranked{r: r, headers: len(m.Headers), order: order}
	if mm := m.Method; mm != nil {
		svcName, method := deref(mm.Service), deref(mm.Method)
		rk.prefix = 1000*len(svcName) + len(method)
		switch {
		case mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression:
			r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/" + orAny(svcName) + "/" + orAny(method)}}
		case svcName != "" && method != "":
			r.Match.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + svcName + "/" + method}
		case method != "": // that method of any service
			r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/[^/]+/" + regexp.QuoteMeta(method)}}
		case svcName != "":
			r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + svcName + "/"}
		}
	}
	for _, h := range m.Headers {
		r.Match.Headers = append(r.Match.Headers, headerMatcher(string(h.Name), h.Value, h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression))
	}
	return rk
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orAny(s string) string {
	if s == "" {
		return "[^/]+"
	}
	return s
}

// access puts RBAC on the inbound listeners of every TrafficTarget's
// destination: allow what the targets allow, deny the rest.
func (c *compiler) access(targets []*accessv1alpha3.TrafficTarget) {
	byDest := map[string][]*accessv1alpha3.TrafficTarget{}
	for _, tt := range targets {
		byDest[tt.Spec.Destination.Name] = append(byDest[tt.Spec.Destination.Name], tt)
	}
	if c.m.DenyByDefault {
		// Every destination is selected, by no target if none names it.
		for _, svc := range c.m.Services {
			if _, ok := byDest[svc.ServiceAccount]; !ok && len(svc.Inbound) > 0 {
				byDest[svc.ServiceAccount] = nil
			}
		}
	}
	for _, dest := range slices.Sorted(maps.Keys(byDest)) {
		var svcs []*Service
		for i := range c.m.Services {
			if c.m.Services[i].ServiceAccount == dest {
				svcs = append(svcs, &c.m.Services[i])
			}
		}
		if len(svcs) == 0 {
			continue // a client: nothing to enforce inbound
		}
		for _, svc := range svcs {
			for _, in := range svc.Inbound {
				rules, err := c.rbac(byDest[dest], in)
				if err == nil {
					err = c.withListener(in, func(h *hcmv3.HttpConnectionManager) error { return setRBAC(h, rules) })
				}
				if err != nil {
					c.fail("TrafficTarget for %s: %v", dest, err)
				}
			}
		}
	}
}

func (c *compiler) withListener(in ListenerRef, f func(*hcmv3.HttpConnectionManager) error) error {
	l, err := c.listener(in.Node, in.Listener)
	if err != nil {
		return err
	}
	return withHCM(l, f)
}

// rbac is the RBAC of a destination's targets, where the calling
// identity is the peer certificate's, or the source header node proxies
// set.
func (c *compiler) rbac(tts []*accessv1alpha3.TrafficTarget, in ListenerRef) (*rbacconfigv3.RBAC, error) {
	out := &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{}}
	if c.mutation == MutateRBACAllowAll {
		out.Policies[MutateRBACAllowAll] = &rbacconfigv3.Policy{
			Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}},
			Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
		}
		return out, nil
	}
	for _, tt := range tts {
		p := &rbacconfigv3.Policy{}
		for _, src := range tt.Spec.Sources {
			id := c.m.Accounts[src.Name]
			if id == "" {
				return nil, fmt.Errorf("TrafficTarget %s: no identity for service account %q", tt.Name, src.Name)
			}
			exact := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}}
			if in.SourceHeader != "" {
				p.Principals = append(p.Principals, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Header{
					Header: &routev3.HeaderMatcher{Name: in.SourceHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact}}}})
			} else {
				p.Principals = append(p.Principals, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{
					Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: exact}}})
			}
		}
		if len(p.Principals) == 0 {
			continue // no source: allows nobody
		}
		for _, rule := range tt.Spec.Rules {
			perms, err := c.permissions(tt.Name, rule)
			if err != nil {
				return nil, err
			}
			p.Permissions = append(p.Permissions, perms...)
		}
		if len(tt.Spec.Rules) == 0 {
			p.Permissions = []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}
		}
		out.Policies[tt.Name] = p
	}
	return out, nil
}

// permissions are what a TrafficTarget rule allows: every connection for
// a TCPRoute, the named matches (all if none is named) of an
// HTTPRouteGroup, each its path regex and methods.
func (c *compiler) permissions(tt string, rule accessv1alpha3.TrafficTargetRule) ([]*rbacconfigv3.Permission, error) {
	if rule.Kind == "TCPRoute" {
		return []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}, nil
	}
	g := c.groups[rule.Name]
	if g == nil {
		return nil, fmt.Errorf("TrafficTarget %s: no HTTPRouteGroup %q", tt, rule.Name)
	}
	var out []*rbacconfigv3.Permission
	for _, m := range g.Spec.Matches {
		if len(rule.Matches) > 0 && !slices.Contains(rule.Matches, m.Name) {
			continue
		}
		if len(m.Headers) > 0 {
			return nil, fmt.Errorf("HTTPRouteGroup %s match %s: header matches are not supported", g.Name, m.Name)
		}
		regex := m.PathRegex
		if regex == "" {
			regex = ".*"
		}
		and := []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{
			Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: regex}}}}}}}}
		if len(m.Methods) > 0 && !slices.Contains(m.Methods, "*") {
			var methods []*rbacconfigv3.Permission
			for _, method := range m.Methods {
				methods = append(methods, &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: headerMatcher(":method", method, false)}})
			}
			and = append(and, &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: methods}}})
		}
		out = append(out, &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: and}}})
	}
	return out, nil
}

// setRBAC puts rules in an RBAC filter before the router, replacing any.
func setRBAC(h *hcmv3.HttpConnectionManager, rules *rbacconfigv3.RBAC) error {
	a, err := anypb.New(&rbacv3.RBAC{Rules: rules})
	if err != nil {
		return err
	}
	f := &hcmv3.HttpFilter{Name: xds.RBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
	filters := slices.DeleteFunc(h.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == xds.RBACFilter })
	h.HttpFilters = append([]*hcmv3.HttpFilter{f}, filters...)
	return nil
}

// Check reports what in policy objects meshbench's control plane does not
// implement, whatever the mesh they are for: a mesh says so before anything
// starts rather than fail when the objects arrive.
func Check(raw []json.RawMessage) error {
	objs, err := decodePolicies(raw)
	if err != nil {
		return err
	}
	var errs []error
	no := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, o := range objs {
		switch o := o.(type) {
		case *splitv1alpha4.TrafficSplit:
			if len(o.Spec.Matches) > 0 {
				no("TrafficSplit %s: spec.matches is not implemented", o.Name)
			}
		case *specsv1alpha4.HTTPRouteGroup:
			for _, m := range o.Spec.Matches {
				if len(m.Headers) > 0 {
					no("HTTPRouteGroup %s match %s: header matches are not implemented", o.Name, m.Name)
				}
			}
		case *gatewayv1.HTTPRoute:
			for i, r := range o.Spec.Rules {
				where := fmt.Sprintf("HTTPRoute %s rules[%d]", o.Name, i)
				redirect := false
				for _, f := range r.Filters {
					switch f.Type {
					case gatewayv1.HTTPRouteFilterRequestRedirect:
						redirect = true
					case gatewayv1.HTTPRouteFilterRequestHeaderModifier, gatewayv1.HTTPRouteFilterResponseHeaderModifier, gatewayv1.HTTPRouteFilterURLRewrite:
					default:
						no("%s: filter %s is not implemented", where, f.Type)
					}
				}
				if len(r.BackendRefs) == 0 && !redirect {
					no("%s: needs backendRefs or a RequestRedirect", where)
				}
				for _, b := range r.BackendRefs {
					if len(b.Filters) > 0 {
						no("%s: filters on backendRefs are not implemented", where)
					}
				}
				if r.Timeouts != nil && r.Timeouts.BackendRequest != nil {
					no("%s: timeouts.backendRequest is not implemented (timeouts.request is)", where)
				}
				if r.Retry != nil && r.Retry.Backoff != nil {
					no("%s: retry.backoff is not implemented", where)
				}
				if r.SessionPersistence != nil {
					no("%s: sessionPersistence is not implemented", where)
				}
			}
		case *gatewayv1.GRPCRoute:
			for i, r := range o.Spec.Rules {
				if len(r.Filters) > 0 {
					no("GRPCRoute %s rules[%d]: filters are not implemented", o.Name, i)
				}
				if len(r.BackendRefs) == 0 {
					no("GRPCRoute %s rules[%d]: needs backendRefs", o.Name, i)
				}
				if r.SessionPersistence != nil {
					no("GRPCRoute %s rules[%d]: sessionPersistence is not implemented", o.Name, i)
				}
			}
		}
	}
	return errors.Join(errs...)
}
