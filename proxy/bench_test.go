package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func benchListener(b *testing.B) *listener {
	cfg := Config{
		Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", Direction: Outbound, VirtualHosts: []VirtualHost{
			{Name: "a", Domains: []string{"server", "server:8080"}, Routes: []Route{
				{Path: "/exact", Cluster: "c"}, {Regex: "/api/v[0-9]+/.*", Cluster: "c"}, {PathPrefix: "/", Cluster: "c"}}},
			{Name: "b", Domains: []string{"*"}, Routes: []Route{{PathPrefix: "/", Cluster: "c"}}},
		}}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}}}},
	}
	cfg.Normalize()
	cl, _ := newCluster(cfg.Clusters[0])
	l, err := newListener(cfg.Listeners[0], map[string]*cluster{"c": cl}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRouteMatch is virtual host and route selection per request.
func BenchmarkRouteMatch(b *testing.B) {
	l := benchListener(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, r := l.match("server:8080", "/api/v1/items", "GET", nil, ""); r == nil {
			b.Fatal("no route")
		}
	}
}

// BenchmarkPrepareHeaders is the per-request header work: hop-by-hop
// removal, X-Forwarded-*, and the trace context.
func BenchmarkPrepareHeaders(b *testing.B) {
	l := benchListener(b)
	r := httptest.NewRequest("GET", "http://server:8080/", nil)
	r.RemoteAddr = "10.0.0.2:40000"
	b.ReportAllocs()
	for b.Loop() {
		r.Header = http.Header{"Accept": {"*/*"}, "Connection": {"keep-alive"}, "User-Agent": {"fortio"}}
		l.prepareHeaders(r)
		ensureTraceparent(r.Header)
	}
}

// BenchmarkMetricsRecord is one request's metrics update.
func BenchmarkMetricsRecord(b *testing.B) {
	l := benchListener(b)
	m := newMetrics("sidecar")
	ex := &exchange{source: "spiffe://td/ns/default/sa/client", cluster: "c", code: 200}
	b.ReportAllocs()
	for b.Loop() {
		m.record(l, ex, 300*time.Microsecond)
	}
}

// BenchmarkPickLeastRequest is one power-of-two-choices endpoint pick.
func BenchmarkPickLeastRequest(b *testing.B) {
	c, _ := newCluster(Cluster{Name: "c", LBPolicy: LBLeastRequest, CircuitBreakers: &CircuitBreakers{},
		Endpoints: []Endpoint{{Address: "a:1"}, {Address: "b:1"}, {Address: "c:1"}, {Address: "d:1"}}})
	b.ReportAllocs()
	for b.Loop() {
		c.pick(nil)
	}
}

// BenchmarkForwardByPolicy is one request through the proxy to a cluster
// of three local endpoints, in round robin and in least request (which
// times each answer from when it had a connection: an httptrace per
// attempt), side by side: the cost of the balancing, allocations first.
func BenchmarkForwardByPolicy(b *testing.B) {
	var ups []Endpoint
	for range 3 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
		b.Cleanup(s.Close)
		ups = append(ups, Endpoint{Address: hostOf(s)})
	}
	for _, lb := range []LBPolicy{LBRoundRobin, LBLeastRequest} {
		b.Run(string(lb), func(b *testing.B) {
			cfg := oneRoute(ups[0].Address)
			cfg.Clusters[0].Endpoints, cfg.Clusters[0].LBPolicy = ups, lb
			_, addr := startProxy(b, cfg)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
