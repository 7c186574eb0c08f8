package proxy

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// echoHead is an upstream that answers with its name, the path and the
// authority it got, and the value of X-Route.
func echoHead(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s", name, r.URL.RequestURI(), r.Host, r.Header.Get("X-Route"))
	}))
	t.Cleanup(s.Close)
	return hostOf(s)
}

func send(t *testing.T, addr, method, target string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+target, nil)
	req.Host = "svc"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req) // no redirects followed, no idle connection left
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestRouteMatchesAndActions: header, query and method matches pick
// routes; redirects, path and authority rewrites and header modifiers do
// what they say.
func TestRouteMatchesAndActions(t *testing.T) {
	a, b := echoHead(t, "a"), echoHead(t, "b")
	cfg := Config{
		Listeners: []Listener{{Name: "l", Direction: Outbound, VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
			{PathPrefix: "/", Headers: []HeaderMatch{{Name: "x-canary", Exact: "true"}}, Cluster: "b",
				RequestHeadersToAdd: []Header{{Name: "X-Route", Value: "canary"}}, ResponseHeadersToAdd: []Header{{Name: "X-Served-By", Value: "b"}}},
			{PathPrefix: "/", Headers: []HeaderMatch{{Name: "x-user", Regex: "admin-[0-9]+"}}, Cluster: "b"},
			{PathPrefix: "/", QueryParams: []QueryMatch{{Name: "v", Exact: "2"}}, Cluster: "b"},
			{PathPrefix: "/old/", Redirect: &Redirect{PrefixRewrite: "/new/", Code: 308}},
			{PathPrefix: "/api/", PrefixRewrite: "/v1/", HostRewrite: "api.internal", Cluster: "a"},
			{PathPrefix: "/seg", Segments: true, PrefixRewrite: "/v2", Cluster: "b"},
			{Path: "/exact", PathRewrite: "/rewritten", Cluster: "a"},
			{PathPrefix: "/", Methods: []string{"POST"}, Cluster: "b"},
			{PathPrefix: "/", Headers: []HeaderMatch{{Name: "x-debug", Present: true, Invert: true}}, Cluster: "a",
				ResponseHeadersToRemove: []string{"Content-Type"}},
			{PathPrefix: "/", Cluster: "b"},
		}}}}},
		Clusters: []Cluster{{Name: "a", Endpoints: []Endpoint{{Address: a}}}, {Name: "b", Endpoints: []Endpoint{{Address: b}}}},
	}
	_, addr := startProxy(t, cfg)
	cases := []struct {
		method, target string
		hdr            map[string]string
		code           int
		body           string
	}{
		{"GET", "/x", map[string]string{"X-Canary": "true"}, 200, "b /x svc canary"},
		{"GET", "/x", map[string]string{"X-Canary": "false"}, 200, "a /x svc "},
		{"GET", "/x", map[string]string{"X-User": "admin-42"}, 200, "b /x svc "},
		{"GET", "/x", map[string]string{"X-User": "admin-x"}, 200, "a /x svc "},
		{"GET", "/x?v=2", nil, 200, "b /x?v=2 svc "},
		{"GET", "/x?v=3", nil, 200, "a /x?v=3 svc "},
		{"GET", "/api/items?q=1", nil, 200, "a /v1/items?q=1 api.internal "},
		{"GET", "/exact", nil, 200, "a /rewritten svc "},
		{"GET", "/seg", nil, 200, "b /v2 svc "},
		{"GET", "/seg/x?y=1", nil, 200, "b /v2/x?y=1 svc "},
		{"GET", "/segx", nil, 200, "a /segx svc "}, // not a whole segment
		{"POST", "/x", nil, 200, "b /x svc "},
		{"GET", "/x", map[string]string{"X-Debug": "1"}, 200, "b /x svc "},
	}
	for _, c := range cases {
		code, _, body := send(t, addr, c.method, c.target, c.hdr)
		if code != c.code || body != c.body {
			t.Errorf("%s %s %v: %d %q, want %d %q", c.method, c.target, c.hdr, code, body, c.code, c.body)
		}
	}
	code, h, _ := send(t, addr, "GET", "/old/page?x=1", nil)
	if code != 308 || h.Get("Location") != "http://svc/new/page?x=1" {
		t.Errorf("redirect: %d Location %q", code, h.Get("Location"))
	}
	if _, h, _ := send(t, addr, "GET", "/x", map[string]string{"X-Canary": "true"}); h.Get("X-Served-By") != "b" {
		t.Errorf("response header not added: %v", h)
	}
	if _, h, _ := send(t, addr, "GET", "/x", nil); h.Get("Content-Type") != "" {
		t.Errorf("response header not removed: %v", h)
	}
}

// TestWeightedClustersSplit: a 90/10 split sends each request to one of
// the clusters with its share, judged with a two-sided exact binomial
// test at a one-in-a-million false-failure rate, and rewrites the
// authority per cluster.
func TestWeightedClustersSplit(t *testing.T) {
	a, b := echoHead(t, "a"), echoHead(t, "b")
	cfg := Config{
		Listeners: []Listener{{Name: "l", Direction: Outbound, VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
			{WeightedClusters: []WeightedCluster{{Name: "a", Weight: 90, HostRewrite: "v1"}, {Name: "b", Weight: 10, HostRewrite: "v2"}, {Name: "a", Weight: 0}}},
		}}}}},
		Clusters: []Cluster{{Name: "a", Endpoints: []Endpoint{{Address: a}}}, {Name: "b", Endpoints: []Endpoint{{Address: b}}}},
	}
	_, addr := startProxy(t, cfg)
	const n = 2000
	got := map[string]int{}
	for range n {
		_, _, body := send(t, addr, "GET", "/", nil)
		got[body]++
	}
	toB := got["b / v2 "]
	if got["a / v1 "]+toB != n {
		t.Fatalf("answers %v", got)
	}
	// P(X <= k) and P(X >= k) for X ~ Binomial(n, 0.1).
	dist := distuv.Binomial{N: n, P: 0.1}
	p := 2 * math.Min(dist.CDF(float64(toB)), 1-dist.CDF(float64(toB-1)))
	if p < 1e-6 {
		t.Errorf("%d of %d requests to the 10%% cluster: p = %.2g under a 90/10 split", toB, n, p)
	}
	if err := (&Route{WeightedClusters: []WeightedCluster{{Name: "a", Weight: 0}}}).validate("r", map[string]bool{"a": true}); len(err) == 0 {
		t.Error("weights adding up to 0 validated")
	}
}

// TestVirtualHostHeaderAppend: a virtual host's header additions append
// or overwrite as each says, as a route's do.
func TestVirtualHostHeaderAppend(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q %q", r.Header.Values("X-Tag"), r.Header.Values("X-One"))
	}))
	t.Cleanup(up.Close)
	cfg := oneRoute(hostOf(up))
	cfg.Listeners[0].VirtualHosts[0].RequestHeadersToAdd = []Header{{Name: "X-Tag", Value: "mesh", Append: true}, {Name: "X-One", Value: "mesh"}}
	_, addr := startProxy(t, cfg)
	_, _, body := send(t, addr, "GET", "/", map[string]string{"X-Tag": "client", "X-One": "client"})
	if want := `["client" "mesh"] ["mesh"]`; body != want {
		t.Errorf("upstream saw %s, want %s", body, want)
	}
}
