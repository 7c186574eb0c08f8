package xds

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/meshbench/meshbench/proxy"
)

// HTTP filter names the subset implements.
const (
	FaultFilter = "envoy.filters.http.fault"
	RBACFilter  = "envoy.filters.http.rbac"
)

// httpFilters checks the filter chain (fault and RBAC before the router,
// which is last) and applies the listener-level RBAC.
func httpFilters(h *hcmv3.HttpConnectionManager, pl *proxy.Listener) (fault bool, err error) {
	fs := h.GetHttpFilters()
	if len(fs) == 0 || fs[len(fs)-1].GetName() != RouterFilter {
		return false, fmt.Errorf("http_filters: the last filter must be %s", RouterFilter)
	}
	for i, f := range fs[:len(fs)-1] {
		switch f.GetName() {
		case FaultFilter:
			fault = true
		case RBACFilter:
			var r rbacfilterv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&r); err != nil {
				return false, fmt.Errorf("http_filters[%d]: %w", i, err)
			}
			if pl.RBAC, err = rbacPolicies(r.GetRules()); err != nil {
				return false, fmt.Errorf("http_filters[%d] (%s): %w", i, RBACFilter, err)
			}
		default:
			return false, fmt.Errorf("http_filters[%d]: %q is not supported (%s, %s, %s)", i, f.GetName(), FaultFilter, RBACFilter, RouterFilter)
		}
	}
	return fault, nil
}

// rbacPolicies translates ALLOW rules. Principals: any, authenticated
// principal name (the peer's SPIFFE ID), or a header carrying a source
// identity (set by node proxies); permissions: any, path prefix or exact
// path, and :method.
func rbacPolicies(rules *rbacv3.RBAC) (*proxy.RBAC, error) {
	if rules == nil {
		return nil, nil
	}
	if rules.GetAction() != rbacv3.RBAC_ALLOW {
		return nil, fmt.Errorf("action %s is not supported (ALLOW)", rules.GetAction())
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	out := &proxy.RBAC{}
	for _, n := range names {
		pol := rules.GetPolicies()[n]
		p := proxy.Policy{Name: n}
		for _, pr := range flattenPrincipals(pol.GetPrincipals()) {
			switch {
			case pr.GetAny():
				p.Principals = append(p.Principals, "*")
			case pr.GetAuthenticated() != nil:
				id := pr.GetAuthenticated().GetPrincipalName().GetExact()
				if id == "" {
					return nil, fmt.Errorf("policy %q: authenticated principals need an exact principal_name", n)
				}
				p.Principals = append(p.Principals, id)
			case pr.GetHeader() != nil:
				id := exactHeader(pr.GetHeader())
				if id == "" {
					return nil, fmt.Errorf("policy %q: header principals need an exact string_match (not inverted, not ignoring case)", n)
				}
				p.SourceHeader = pr.GetHeader().GetName()
				p.Principals = append(p.Principals, id)
			default:
				return nil, fmt.Errorf("policy %q: unsupported principal", n)
			}
		}
		// A policy's permissions are alternatives (Envoy ORs them): each
		// becomes a proxy policy of its own, with the same principals.
		var clauses []permission
		for _, pm := range pol.GetPermissions() {
			c, err := permissionClauses(pm)
			if err != nil {
				return nil, fmt.Errorf("policy %q: %w", n, err)
			}
			clauses = append(clauses, c...)
		}
		for i, c := range clauses {
			q := p
			if len(clauses) > 1 {
				q.Name = fmt.Sprintf("%s[%d]", n, i)
			}
			q.Paths, q.PathPrefixes, q.PathRegexes, q.Methods, q.Hosts = c.paths, c.prefixes, c.regexes, c.methods, c.hosts
			out.Policies = append(out.Policies, q)
		}
	}
	return out, nil
}

// permission is one alternative of an RBAC policy's permissions, as the
// proxy checks it: any of its paths (none: any path) and any of its
// methods (none: any method).
type permission struct {
	paths, prefixes, regexes, methods []string
	// hosts are exact :authority values (an HBONE stream's destination).
	hosts []string
}

func (p permission) hasPath() bool { return len(p.paths)+len(p.prefixes)+len(p.regexes) > 0 }

// permissionClauses turns an Envoy permission into the alternatives it
// allows: any, a URL path, a :method, or_rules of those, and and_rules
// joining at most one set of paths with at most one set of methods.
func permissionClauses(pm *rbacv3.Permission) ([]permission, error) {
	switch {
	case pm.GetAny():
		return []permission{{}}, nil
	case pm.GetUrlPath() != nil:
		var c permission
		sm := pm.GetUrlPath().GetPath()
		switch {
		case sm.GetPrefix() != "":
			c.prefixes = []string{sm.GetPrefix()}
		case sm.GetExact() != "":
			c.paths = []string{sm.GetExact()}
		case sm.GetSafeRegex() != nil:
			c.regexes = []string{sm.GetSafeRegex().GetRegex()}
		default:
			return nil, errors.New("url_path: want exact, prefix or safe_regex")
		}
		return []permission{c}, nil
	case pm.GetHeader() != nil && pm.GetHeader().GetName() == ":method" && exactHeader(pm.GetHeader()) != "":
		return []permission{{methods: []string{exactHeader(pm.GetHeader())}}}, nil
	case pm.GetHeader() != nil && pm.GetHeader().GetName() == ":authority" && exactHeader(pm.GetHeader()) != "":
		return []permission{{hosts: []string{exactHeader(pm.GetHeader())}}}, nil
	case pm.GetOrRules() != nil:
		var out []permission
		for _, r := range pm.GetOrRules().GetRules() {
			c, err := permissionClauses(r)
			if err != nil {
				return nil, err
			}
			out = append(out, c...)
		}
		return out, nil
	case pm.GetAndRules() != nil:
		var joined permission
		for _, r := range pm.GetAndRules().GetRules() {
			alts, err := permissionClauses(r)
			if err != nil {
				return nil, err
			}
			// The alternatives of one rule must all be paths, or all
			// methods, to fold into one permission.
			var part permission
			for _, a := range alts {
				part.paths = append(part.paths, a.paths...)
				part.prefixes = append(part.prefixes, a.prefixes...)
				part.regexes = append(part.regexes, a.regexes...)
				part.methods = append(part.methods, a.methods...)
				part.hosts = append(part.hosts, a.hosts...)
				if !a.hasPath() && len(a.methods) == 0 && len(a.hosts) == 0 {
					part = permission{} // any: no constraint
					break
				}
			}
			kinds := 0
			for _, set := range []bool{part.hasPath(), len(part.methods) > 0, len(part.hosts) > 0} {
				if set {
					kinds++
				}
			}
			switch {
			case kinds > 1:
				return nil, errors.New("and_rules: a rule mixes paths, methods and :authority")
			case part.hasPath() && joined.hasPath(), len(part.methods) > 0 && len(joined.methods) > 0,
				len(part.hosts) > 0 && len(joined.hosts) > 0:
				return nil, errors.New("and_rules: at most one rule of paths, one of methods and one of :authority")
			}
			joined.paths = append(joined.paths, part.paths...)
			joined.prefixes = append(joined.prefixes, part.prefixes...)
			joined.regexes = append(joined.regexes, part.regexes...)
			joined.methods = append(joined.methods, part.methods...)
			joined.hosts = append(joined.hosts, part.hosts...)
		}
		return []permission{joined}, nil
	}
	return nil, errors.New("unsupported permission (any, url_path, :method or :authority header, or_rules, and_rules)")
}

func flattenPrincipals(ps []*rbacv3.Principal) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	for _, p := range ps {
		if set := p.GetOrIds(); set != nil {
			out = append(out, flattenPrincipals(set.GetIds())...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func percent(f *typev3.FractionalPercent) float64 {
	if f == nil {
		return 100
	}
	den := map[typev3.FractionalPercent_DenominatorType]float64{
		typev3.FractionalPercent_HUNDRED: 100, typev3.FractionalPercent_TEN_THOUSAND: 10000, typev3.FractionalPercent_MILLION: 1e6,
	}[f.GetDenominator()]
	return float64(f.GetNumerator()) / den * 100
}

// routeFeatures reads a route's retry policy, :method match and fault.
func routeFeatures(r *routev3.Route, pr *proxy.Route, faultEnabled bool) error {
	if err := routeMatches(r.GetMatch(), pr); err != nil {
		return err
	}
	if err := routeHeaderChanges(r, pr); err != nil {
		return err
	}
	if rp := r.GetRoute().GetRetryPolicy(); rp != nil {
		p := &proxy.RetryPolicy{NumRetries: 1, PerTryTimeout: dur(rp.GetPerTryTimeout())}
		if n := rp.GetNumRetries(); n != nil {
			p.NumRetries = int(n.GetValue())
		}
		for _, on := range strings.Split(rp.GetRetryOn(), ",") {
			on = strings.TrimSpace(on)
			switch on {
			case "connect-failure", "reset", "5xx", "gateway-error", "retriable-status-codes":
				p.RetryOn = append(p.RetryOn, on)
			case "":
			default:
				return fmt.Errorf("retry_policy.retry_on: %q is not supported", on)
			}
		}
		for _, c := range rp.GetRetriableStatusCodes() {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, int(c))
		}
		for _, h := range rp.GetRetriableRequestHeaders() {
			if h.GetName() != ":method" || exactHeader(h) == "" {
				return errors.New("retry_policy.retriable_request_headers: only exact :method matchers are supported")
			}
			p.Methods = append(p.Methods, exactHeader(h))
		}
		pr.Retry = p
	}
	for name, a := range r.GetTypedPerFilterConfig() {
		if name != FaultFilter {
			return fmt.Errorf("typed_per_filter_config: %q is not supported (%s)", name, FaultFilter)
		}
		if !faultEnabled {
			return fmt.Errorf("typed_per_filter_config: %s is configured but not in the listener's http_filters", FaultFilter)
		}
		var f faultv3.HTTPFault
		if err := a.UnmarshalTo(&f); err != nil {
			return err
		}
		pf := &proxy.Fault{}
		if d := f.GetDelay(); d != nil {
			pf.Delay, pf.DelayPercent = dur(d.GetFixedDelay()), percent(d.GetPercentage())
		}
		if ab := f.GetAbort(); ab != nil {
			pf.AbortPercent = percent(ab.GetPercentage())
			pf.AbortStatus = int(ab.GetHttpStatus())
			pf.AbortGRPCStatus = int(ab.GetGrpcStatus())
			if pf.AbortStatus == 0 && pf.AbortGRPCStatus == 0 {
				return errors.New("fault abort: set http_status or grpc_status")
			}
		}
		for _, h := range f.GetHeaders() {
			if !h.GetPresentMatch() {
				return errors.New("fault headers: only present_match is supported")
			}
			pf.Header = h.GetName()
		}
		pr.Fault = pf
	}
	return nil
}

// clusterFeatures reads load balancing, circuit breakers (the default
// priority's thresholds, with the retry budget) and outlier detection.
func clusterFeatures(c *clusterv3.Cluster, pc *proxy.Cluster) error {
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		pc.LBPolicy = proxy.LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		pc.LBPolicy = proxy.LBLeastRequest
	default:
		return fmt.Errorf("lb_policy %s is not supported (ROUND_ROBIN, LEAST_REQUEST)", c.GetLbPolicy())
	}
	if cb := c.GetCircuitBreakers(); cb != nil {
		pc.CircuitBreakers = &proxy.CircuitBreakers{}
		for _, t := range cb.GetThresholds() {
			if t.GetPriority() != 0 {
				return errors.New("circuit_breakers: only DEFAULT priority thresholds are supported")
			}
			pc.CircuitBreakers.MaxConnections = int(t.GetMaxConnections().GetValue())
			pc.CircuitBreakers.MaxPendingRequests = int(t.GetMaxPendingRequests().GetValue())
			pc.CircuitBreakers.MaxRequests = int(t.GetMaxRequests().GetValue())
			if rb := t.GetRetryBudget(); rb != nil {
				pc.CircuitBreakers.RetryBudgetPercent = rb.GetBudgetPercent().GetValue()
				pc.CircuitBreakers.MinRetryConcurrency = int(rb.GetMinRetryConcurrency().GetValue())
			}
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		pc.Outlier = &proxy.Outlier{
			Consecutive5xx:            int(od.GetConsecutive_5Xx().GetValue()),
			ConsecutiveGatewayFailure: int(od.GetConsecutiveGatewayFailure().GetValue()),
			BaseEjectionTime:          dur(od.GetBaseEjectionTime()),
			MaxEjectionPercent:        int(od.GetMaxEjectionPercent().GetValue()),
		}
		if od.GetConsecutive_5Xx() == nil {
			pc.Outlier.Consecutive5xx = 5 // Envoy's default
		}
	}
	return nil
}

// exactHeader is the value a header matcher requires exactly, or "" when
// it asks for anything else: a regex, a prefix, a case-insensitive match,
// an inverted one or a presence test, which a policy read as an exact
// match would enforce wrongly (an inverted :authority would admit only
// what it was written to keep out).
func exactHeader(h *routev3.HeaderMatcher) string {
	sm := h.GetStringMatch()
	if h.GetInvertMatch() || sm.GetIgnoreCase() || h.GetTreatMissingHeaderAsEmpty() {
		return ""
	}
	return sm.GetExact()
}
