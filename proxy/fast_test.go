package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
)

// TestFastEngineServesWhatItCan: with the fasthttp engine chosen, a plain
// listener is served by fasthttp and one using a feature the engine lacks
// stays on net/http, with the feature working; HTTP/2 connections to the
// fasthttp listener are served by net/http beside it.
func TestFastEngineServesWhatItCan(t *testing.T) {
	addr := rawUpstream(t, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) // no Date

	cfg := oneRoute(addr)
	faulty := cfg.Listeners[0]
	faulty.Name = "faulty"
	faulty.VirtualHosts = []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
		{PathPrefix: "/", Cluster: "c", Fault: &Fault{AbortPercent: 100, AbortStatus: 418}}}}}
	faulty.Address = "127.0.0.1:0"
	cfg.Listeners = append(cfg.Listeners, faulty)
	p, _ := startProxy(t, cfg, WithHTTP1Engine(EngineFastHTTP))

	get := func(listener string) *http.Response {
		t.Helper()
		resp, err := http.Get("http://" + p.Addr(listener) + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return resp
	}
	if !p.bound["l"].cur.Load().fast || p.bound["faulty"].cur.Load().fast {
		t.Fatalf("fasthttp serves l: %v, faulty: %v; want l only", p.bound["l"].cur.Load().fast, p.bound["faulty"].cur.Load().fast)
	}
	if resp := get("l"); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "" {
		t.Errorf("plain listener: %d, Content-Type %q; want 200 and no Content-Type (the upstream sent none)", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp := get("faulty"); resp.StatusCode != 418 {
		t.Errorf("listener with a fault: %d, want the fault's 418", resp.StatusCode)
	}

	// HTTP/2 (h2c, prior knowledge) on the fasthttp listener goes to
	// net/http beside it.
	h2c := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	resp, err := h2c.Get("http://" + p.Addr("l") + "/y")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("h2c on the fasthttp listener: %s %d %q, want HTTP/2 200 %q", resp.Proto, resp.StatusCode, body, "ok")
	}
}

// TestFastUnsupported names what keeps a listener on net/http.
func TestFastUnsupported(t *testing.T) {
	base := func(edit func(*Config)) Config {
		cfg := oneRoute("127.0.0.1:1")
		cfg.Listeners[0].Address = "127.0.0.1:0"
		edit(&cfg)
		return cfg
	}
	route := func(cfg *Config) *Route { return &cfg.Listeners[0].VirtualHosts[0].Routes[0] }
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"plain", base(func(*Config) {}), ""},
		{"fault", base(func(c *Config) { route(c).Fault = &Fault{AbortPercent: 1, AbortStatus: 503} }), "a route injects faults"},
		{"rewrite", base(func(c *Config) { route(c).PathPrefix, route(c).PrefixRewrite = "/a", "/b" }), "a route rewrites"},
		{"header match", base(func(c *Config) { route(c).Headers = []HeaderMatch{{Name: "x", Exact: "y"}} }), "a route matches headers"},
		{"codec", base(func(c *Config) { c.Listeners[0].Codec = CodecHTTP2 }), "its codec is HTTP/2"},
		{"h2 cluster", base(func(c *Config) { c.Clusters[0].HTTP2 = true }), "cluster c speaks HTTP/2"},
		{"least request", base(func(c *Config) { c.Clusters[0].LBPolicy = LBLeastRequest }), "cluster c balances by least request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := fastUnsupported(p.state.Load().listeners["l"]); got != c.want {
				t.Errorf("fastUnsupported = %q, want %q", got, c.want)
			}
		})
	}
}

// fastWireProxy is a fasthttp engine proxy in front of a recording
// upstream (whatever engine the package's tests run on).
func fastWireProxy(t *testing.T, up string) string {
	t.Helper()
	_, addr := startProxy(t, oneRoute(up), WithHTTP1Engine(EngineFastHTTP))
	return addr
}

// TestFastEngineSendsWhatItMatched: what routing and RBAC saw is what the
// upstream gets, and what the downstream cannot assert (the forwarding
// chain, its trace, headers smuggled in a trailer) is the proxy's. Each
// case failed before the review's fixes.
func TestFastEngineSendsWhatItMatched(t *testing.T) {
	cases := []struct {
		name, request string
		code          int
		// upstream is what the upstream must have received (its request
		// line, or "" for nothing); absent, fields it must not have.
		upstream string
		absent   []string
	}{
		{name: "fragment refused", request: "GET /admin#.css HTTP/1.1\r\nHost: x\r\n\r\n", code: 400},
		{name: "absolute form with user information refused", request: "GET http://u:p@x/a HTTP/1.1\r\nHost: x\r\n\r\n", code: 400},
		{name: "absolute form sent in origin form", request: "GET http://x?q/r HTTP/1.1\r\nHost: x\r\n\r\n", code: 200,
			upstream: "GET /?q/r HTTP/1.1\r\n"},
		{name: "every X-Forwarded-For field replaced by one", request: "GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", code: 200,
			upstream: "GET /a HTTP/1.1\r\n", absent: []string{"X-Forwarded-For: 6.6.6.6\r\n"}},
		{name: "every traceparent field replaced by one", request: "GET /a HTTP/1.1\r\nHost: x\r\nTraceparent: a\r\nTraceparent: b\r\n\r\n", code: 200,
			upstream: "GET /a HTTP/1.1\r\n", absent: []string{"Traceparent: b\r\n", "Traceparent: a\r\n"}},
		{name: "trailer fields dropped", request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Meshbench-Source: spiffe://evil\r\n\r\n", code: 200,
			upstream: "POST /a HTTP/1.1\r\n", absent: []string{"X-Meshbench-Source"}},
		{name: "trailer field repeating a header refused", request: "POST /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 2\r\n\r\n", code: 400},
		{name: "identity coding refused", request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", code: 501},
		{name: "unknown version refused", request: "GET /a HTTP/1.2\r\nHost: x\r\n\r\n", code: 505},
		{name: "HTTP/1.0 sent as HTTP/1.1", request: "GET /a HTTP/1.0\r\nHost: x\r\n\r\n", code: 200, upstream: "GET /a HTTP/1.1\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := newWireUpstream(t)
			conn, err := net.Dial("tcp", fastWireProxy(t, up.addr))
			if err != nil {
				t.Fatal(err)
			}
			resps, _ := exchangeAll(t, conn, c.request+sentinel, wireDeadline)
			if len(resps) == 0 || resps[0].code != c.code {
				t.Fatalf("client saw %v, want %d first", resps, c.code)
			}
			got := up.received()
			if c.upstream == "" && got != "" && !strings.HasPrefix(got, "GET /sentinel ") {
				t.Errorf("upstream received %q, want nothing before the sentinel", got)
			}
			if !strings.HasPrefix(got, c.upstream) {
				t.Errorf("upstream received %q, want it to begin %q", got, c.upstream)
			}
			for _, a := range c.absent {
				if strings.Contains(got, a) {
					t.Errorf("upstream received %q, which has %q", got, a)
				}
			}
			first, _, _ := strings.Cut(got, "GET /sentinel ")
			if strings.Count(first, "X-Forwarded-For:") > 1 || strings.Count(first, "Traceparent:") > 1 {
				t.Errorf("upstream received %q: one X-Forwarded-For and one Traceparent at most", got)
			}
		})
	}
}

// TestFastEngineResponseHopHeaders: hop-by-hop fields of an answer stay
// on its hop, whatever their case.
func TestFastEngineResponseHopHeaders(t *testing.T) {
	up := rawUpstream(t, []byte("HTTP/1.1 200 OK\r\nconnection: x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nupgrade: h2c\r\nX-End: 1\r\nContent-Length: 2\r\n\r\nok"))
	resp, err := http.Get("http://" + fastWireProxy(t, up) + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"X-Hop", "Keep-Alive", "Upgrade", "Connection"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("answer has %s: %q, a hop-by-hop field of the upstream's", h, v)
		}
	}
	if resp.Header.Get("X-End") != "1" {
		t.Errorf("answer lost its end-to-end field X-End: %v", resp.Header)
	}
}

// TestFastEngineRetriesAStaleConnectionOnce: an upstream that closes
// every connection without answering gets a GET twice (the second on a
// fresh connection, as for a pooled connection the upstream closed while
// idle), never fasthttp's own five attempts, and a POST once.
func TestFastEngineRetriesAStaleConnectionOnce(t *testing.T) {
	for _, c := range []struct {
		method string
		want   int64
	}{{"GET", 2}, {"POST", 1}} {
		t.Run(c.method, func(t *testing.T) {
			var got atomic.Int64
			up := serveTCP(t, func(conn net.Conn) {
				buf := make([]byte, 4096)
				if n, _ := conn.Read(buf); n > 0 {
					got.Add(1)
				}
			})
			req, _ := http.NewRequest(c.method, "http://"+fastWireProxy(t, up)+"/a", strings.NewReader("body"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || got.Load() != c.want {
				t.Errorf("%d, upstream got %d requests; want 503 after %d", resp.StatusCode, got.Load(), c.want)
			}
		})
	}
}

// TestFastEngineFollowsBodyBoundUpdates: a listener's body bound and
// request timeout change with an update that keeps its server (serverKey
// leaves them out), so the fasthttp server must read them from the
// listener in force. Before, it kept the bound it started with.
func TestFastEngineFollowsBodyBoundUpdates(t *testing.T) {
	up := newWireUpstream(t)
	cfg := oneRoute(up.addr)
	cfg.Listeners[0].MaxRequestBytes = 1 << 20
	p, addr := startProxy(t, cfg, WithHTTP1Engine(EngineFastHTTP))
	post := func() int {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/a", "text/plain", strings.NewReader(strings.Repeat("x", 4096)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != 200 {
		t.Fatalf("4 KiB under a 1 MiB bound: %d, want 200", code)
	}
	cfg.Listeners[0].MaxRequestBytes = 1024
	if err := p.Update(cfg, "smaller", nil); err != nil {
		t.Fatal(err)
	}
	if code := post(); code != http.StatusRequestEntityTooLarge {
		t.Errorf("4 KiB over the updated 1 KiB bound: %d, want 413", code)
	}
}
