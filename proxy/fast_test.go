package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
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
