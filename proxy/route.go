package proxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// compiledRoute is what a listener compiled of a Route: its regular
// expressions, and the clusters its requests go to.
type compiledRoute struct {
	regex   *regexp.Regexp
	headers []headerMatcher
	query   []queryMatcher
	// cluster, or weighted with their total weight; neither for a redirect.
	cluster  *cluster
	weighted []weightedTarget
	total    int
}

type weightedTarget struct {
	c           *cluster
	upto        int // cumulative weight
	hostRewrite string
}

type headerMatcher struct {
	m  HeaderMatch
	re *regexp.Regexp
}

type queryMatcher struct {
	m  QueryMatch
	re *regexp.Regexp
}

// anchored compiles an RE2 expression that must match a whole value, as
// Envoy's safe_regex does. Validate compiled each one already.
func anchored(expr string) *regexp.Regexp { return regexp.MustCompile("^(?:" + expr + ")$") }

func compileRoute(r *Route, clusters map[string]*cluster) *compiledRoute {
	cr := &compiledRoute{cluster: clusters[r.Cluster]}
	if r.Regex != "" {
		cr.regex = anchored(r.Regex)
	}
	for _, h := range r.Headers {
		hm := headerMatcher{m: h}
		hm.m.Name = http.CanonicalHeaderKey(h.Name)
		if h.Regex != "" {
			hm.re = anchored(h.Regex)
		}
		cr.headers = append(cr.headers, hm)
	}
	for _, q := range r.QueryParams {
		qm := queryMatcher{m: q}
		if q.Regex != "" {
			qm.re = anchored(q.Regex)
		}
		cr.query = append(cr.query, qm)
	}
	for _, wc := range r.WeightedClusters {
		if wc.Weight <= 0 {
			continue
		}
		cr.total += wc.Weight
		cr.weighted = append(cr.weighted, weightedTarget{c: clusters[wc.Name], upto: cr.total, hostRewrite: wc.HostRewrite})
	}
	return cr
}

func (cr *compiledRoute) matchPath(r *Route, path string) bool {
	switch {
	case r.Path != "":
		return path == r.Path
	case cr.regex != nil:
		return cr.regex.MatchString(path)
	}
	if r.Segments {
		rest, ok := strings.CutPrefix(path, r.PathPrefix)
		return ok && (rest == "" || rest[0] == '/')
	}
	return strings.HasPrefix(path, r.PathPrefix)
}

func (cr *compiledRoute) matchHeaders(h http.Header) bool {
	for _, hm := range cr.headers {
		vs, present := h[hm.m.Name]
		v := strings.Join(vs, ",")
		var ok bool
		switch {
		case hm.m.Exact != "":
			ok = present && v == hm.m.Exact
		case hm.m.Prefix != "":
			ok = present && strings.HasPrefix(v, hm.m.Prefix)
		case hm.re != nil:
			ok = present && hm.re.MatchString(v)
		default: // present
			ok = present
		}
		if ok == hm.m.Invert {
			return false
		}
	}
	return true
}

func (cr *compiledRoute) matchQuery(q url.Values) bool {
	for _, qm := range cr.query {
		vs, present := q[qm.m.Name]
		v := ""
		if present {
			v = vs[0]
		}
		switch {
		case qm.m.Exact != "":
			if !present || v != qm.m.Exact {
				return false
			}
		case qm.re != nil:
			if !present || !qm.re.MatchString(v) {
				return false
			}
		default:
			if !present {
				return false
			}
		}
	}
	return true
}

// pick returns the cluster for one request and the authority to send, if
// the split rewrites it.
func (cr *compiledRoute) pick() (*cluster, string) {
	if cr.cluster != nil || len(cr.weighted) == 0 {
		return cr.cluster, ""
	}
	n := rand.IntN(cr.total)
	for _, w := range cr.weighted {
		if n < w.upto {
			return w.c, w.hostRewrite
		}
	}
	last := cr.weighted[len(cr.weighted)-1]
	return last.c, last.hostRewrite
}

// redirect answers r with the route's redirect.
func redirect(w http.ResponseWriter, r *http.Request, route *Route, proto string) int {
	rd := route.Redirect
	u := url.URL{Scheme: proto, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if rd.Scheme != "" {
		u.Scheme = rd.Scheme
	}
	if rd.Host != "" {
		u.Host = rd.Host
	}
	if rd.Port != 0 {
		host := u.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		u.Host = host + ":" + strconv.Itoa(rd.Port)
	}
	switch {
	case rd.Path != "":
		u.Path = rd.Path
	case rd.PrefixRewrite != "":
		u.Path = rd.PrefixRewrite + strings.TrimPrefix(r.URL.Path, route.PathPrefix)
	}
	code := rd.Code
	if code == 0 {
		code = http.StatusMovedPermanently
	}
	w.Header().Set("Location", u.String())
	w.WriteHeader(code)
	return code
}

// rewrite applies the route's path and authority rewrites to r, which the
// handler owns.
func rewrite(r *http.Request, route *Route, hostRewrite string) {
	switch {
	case route.PathRewrite != "":
		r.URL.Path, r.URL.RawPath = route.PathRewrite, ""
	case route.PrefixRewrite != "":
		r.URL.Path, r.URL.RawPath = route.PrefixRewrite+strings.TrimPrefix(r.URL.Path, route.PathPrefix), ""
	}
	if route.HostRewrite != "" {
		r.Host = route.HostRewrite
	}
	if hostRewrite != "" {
		r.Host = hostRewrite
	}
}

// routeHeaders applies a route's request header removals and additions.
func routeHeaders(h http.Header, route *Route) {
	changeHeaders(h, route.RequestHeadersToRemove, route.RequestHeadersToAdd)
}

// changeHeaders removes the named headers, then sets (or appends) hs.
func changeHeaders(h http.Header, remove []string, hs []Header) {
	for _, name := range remove {
		h.Del(name)
	}
	for _, add := range hs {
		if add.Append {
			h.Add(add.Name, add.Value)
		} else {
			h.Set(add.Name, add.Value)
		}
	}
}

// responseHeaders applies a route's response header removals and
// additions to the response about to be written.
func responseHeaders(h http.Header, route *Route) {
	for _, name := range route.ResponseHeadersToRemove {
		// A nil value, not a deletion: net/http would add Content-Type
		// (and Date) back by itself.
		h[http.CanonicalHeaderKey(name)] = nil
	}
	changeHeaders(h, nil, route.ResponseHeadersToAdd)
}
