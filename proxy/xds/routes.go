package xds

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshbench/meshbench/proxy"
)

// routeMatches reads a route's header (":method" included) and query
// parameter matchers.
func routeMatches(m *routev3.RouteMatch, pr *proxy.Route) error {
	for _, h := range m.GetHeaders() {
		if h.GetName() == ":method" {
			if h.GetStringMatch().GetExact() == "" || h.GetInvertMatch() {
				return errors.New("match.headers: :method needs an exact string_match")
			}
			pr.Methods = append(pr.Methods, h.GetStringMatch().GetExact())
			continue
		}
		hm := proxy.HeaderMatch{Name: h.GetName(), Invert: h.GetInvertMatch()}
		switch {
		case h.GetPresentMatch():
			hm.Present = true
		case h.GetStringMatch() != nil:
			if err := stringMatch(h.GetStringMatch(), &hm.Exact, &hm.Prefix, &hm.Regex); err != nil {
				return fmt.Errorf("match.headers %q: %w", h.GetName(), err)
			}
		default:
			return fmt.Errorf("match.headers %q: want string_match or present_match", h.GetName())
		}
		pr.Headers = append(pr.Headers, hm)
	}
	for _, q := range m.GetQueryParameters() {
		qm := proxy.QueryMatch{Name: q.GetName()}
		switch {
		case q.GetPresentMatch():
			qm.Present = true
		case q.GetStringMatch() != nil:
			var prefix string
			if err := stringMatch(q.GetStringMatch(), &qm.Exact, &prefix, &qm.Regex); err != nil || prefix != "" {
				return fmt.Errorf("match.query_parameters %q: want an exact or safe_regex string_match", q.GetName())
			}
		default:
			return fmt.Errorf("match.query_parameters %q: want string_match or present_match", q.GetName())
		}
		pr.QueryParams = append(pr.QueryParams, qm)
	}
	return nil
}

// stringMatch reads a StringMatcher of one of the kinds the proxy does.
func stringMatch(sm *matcherv3.StringMatcher, exact, prefix, regex *string) error {
	switch {
	case sm.GetExact() != "":
		*exact = sm.GetExact()
	case sm.GetPrefix() != "":
		*prefix = sm.GetPrefix()
	case sm.GetSafeRegex() != nil:
		*regex = sm.GetSafeRegex().GetRegex()
	default:
		return errors.New("want exact, prefix or safe_regex")
	}
	return nil
}

// routeHeaderChanges reads a route's request and response header
// additions and removals.
func routeHeaderChanges(r *routev3.Route, pr *proxy.Route) error {
	add := func(opts []*corev3.HeaderValueOption, what string) ([]proxy.Header, error) {
		var out []proxy.Header
		for _, hv := range opts {
			h := proxy.Header{Name: hv.GetHeader().GetKey(), Value: hv.GetHeader().GetValue()}
			switch hv.GetAppendAction() {
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				h.Append = true
			default:
				return nil, fmt.Errorf("%s: append_action OVERWRITE_IF_EXISTS_OR_ADD or APPEND_IF_EXISTS_OR_ADD only", what)
			}
			out = append(out, h)
		}
		return out, nil
	}
	var err error
	if pr.RequestHeadersToAdd, err = add(r.GetRequestHeadersToAdd(), "request_headers_to_add"); err != nil {
		return err
	}
	if pr.ResponseHeadersToAdd, err = add(r.GetResponseHeadersToAdd(), "response_headers_to_add"); err != nil {
		return err
	}
	pr.RequestHeadersToRemove = r.GetRequestHeadersToRemove()
	pr.ResponseHeadersToRemove = r.GetResponseHeadersToRemove()
	return nil
}

// redirectAction reads a route's redirect.
func redirectAction(rd *routev3.RedirectAction, pr *proxy.Route) error {
	r := &proxy.Redirect{Host: rd.GetHostRedirect(), Port: int(rd.GetPortRedirect()),
		Path: rd.GetPathRedirect(), PrefixRewrite: rd.GetPrefixRewrite()}
	switch {
	case rd.GetHttpsRedirect():
		r.Scheme = "https"
	case rd.GetSchemeRedirect() != "":
		r.Scheme = rd.GetSchemeRedirect()
	}
	codes := map[routev3.RedirectAction_RedirectResponseCode]int{
		routev3.RedirectAction_MOVED_PERMANENTLY: 301, routev3.RedirectAction_FOUND: 302, routev3.RedirectAction_SEE_OTHER: 303,
		routev3.RedirectAction_TEMPORARY_REDIRECT: 307, routev3.RedirectAction_PERMANENT_REDIRECT: 308,
	}
	r.Code = codes[rd.GetResponseCode()]
	pr.Redirect = r
	return nil
}
