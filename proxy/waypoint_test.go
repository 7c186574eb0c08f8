package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// TestWaypoint chains internal listeners as an ambient waypoint does: a
// caller's L4 proxy tunnels its connection to the waypoint; the waypoint
// ends the stream into an internal HTTP listener (L7 RBAC by the caller's
// identity, a fault, routes), whose cluster sends each request through an
// internal TCP listener that tunnels it, under the waypoint's identity, to
// the destination node, which admits only the waypoint.
func TestWaypoint(t *testing.T) {
	ch := waypointChain(t)
	end, wp, id := ch.end, ch.wp, ch.id
	get := func(out, path string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", out)
			}}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://svc:80" + path)
		if err != nil {
			t.Fatalf("GET %s via %s: %v", path, out, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	client, other := ch.caller(t, "client"), ch.caller(t, "other")
	for _, c := range []struct {
		out, path string
		code      int
		body      string
	}{
		{client, "/allowed", http.StatusOK, "app saw svc:80/allowed"},
		{client, "/other", http.StatusForbidden, ""}, // the L7 RBAC sees client's identity
		{other, "/other", http.StatusOK, "app saw svc:80/other"},
		{other, "/allowed", http.StatusForbidden, ""},
		{client, "/abort", http.StatusTeapot, ""}, // the route's fault
	} {
		code, body := get(c.out, c.path)
		if code != c.code || (c.body != "" && body != c.body) {
			t.Errorf("GET %s from %s: %d %q, want %d %q", c.path, c.out, code, body, c.code, c.body)
		}
	}
	main := wp.Stats().Listeners["main"]
	if main.Requests != 5 || main.Denied != 2 || main.FaultAborts != 1 {
		t.Errorf("waypoint's L7 listener: %d requests, %d denied, %d aborted; want 5, 2, 1", main.Requests, main.Denied, main.FaultAborts)
	}
	// The destination saw the waypoint's streams only, over one pooled
	// connection (the waypoint's upstream connections, kept alive, each a
	// stream), and the app the two requests allowed.
	hb := end.Stats().Listeners["hbone"]
	if hb.Connections != 1 || hb.Responses2xx == 0 || hb.Denied != 0 || ch.served.Load() != 2 {
		t.Errorf("destination's tunnel end: %d connections, %d streams answered 200, %d denied, %d requests served; want 1, > 0, 0, 2",
			hb.Connections, hb.Responses2xx, hb.Denied, ch.served.Load())
	}
	// A caller tunnelling to the destination directly, past the waypoint,
	// is refused there: it admits only the waypoint.
	_, direct := startProxy(t, Config{
		Listeners: []Listener{{Name: "out", Direction: Outbound, TCPCluster: "node-b", TCPTunnel: "pod-1:80"}},
		Clusters:  []Cluster{{Name: "node-b", HTTP2: true, TLS: ch.issue("client", id("node-b")), Endpoints: []Endpoint{{Address: ch.endAddr}}}},
	})
	if got := roundTrip(t, direct, "GET / HTTP/1.1\r\nHost: svc:80\r\n\r\n"); got != "" {
		t.Errorf("a direct stream past the waypoint was answered: %q", got)
	}
	if d := end.Stats().Listeners["hbone"].Denied; d != 1 {
		t.Errorf("destination denied %d streams, want 1", d)
	}
}

// TestInternalListenerRefusals: what internal listeners and endpoints
// cannot mean is refused with the reason.
func TestInternalListenerRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"an address", Config{Listeners: []Listener{{Name: "i", Internal: true, Address: "127.0.0.1:1", Direction: Inbound, TCPCluster: "c"}},
			Clusters: []Cluster{{Name: "c"}}}, "an internal listener has no address"},
		{"no such listener", Config{Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "a:1", Internal: "nowhere"}}}}},
			`"nowhere" is not an internal listener`},
		{"a cycle", Config{Listeners: []Listener{
			{Name: "a", Internal: true, Direction: Inbound, TCPCluster: "to-b"},
			{Name: "b", Internal: true, Direction: Inbound, VirtualHosts: []VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []Route{{Cluster: "to-a"}}}}},
		}, Clusters: []Cluster{{Name: "to-a", Endpoints: []Endpoint{{Address: "a:1", Internal: "a"}}}, {Name: "to-b", Endpoints: []Endpoint{{Address: "b:1", Internal: "b"}}}}},
			"internal listeners send to themselves: a -> b -> a"},
		{"a listener with an address", Config{Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", Direction: Inbound, TCPCluster: "c"}},
			Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "a:1", Internal: "l"}}}}}, `"l" is not an internal listener`},
	} {
		c.cfg.Normalize()
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestInternalListenerUpdate: an update that changes an internal
// listener's routes keeps it in service under its name (no dial fails),
// and one that removes it takes the name out of service.
func TestInternalListenerUpdate(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	t.Cleanup(app.Close)
	cfg := func(abort int) Config {
		inner := Route{Cluster: "app"}
		if abort != 0 {
			inner.Fault = &Fault{AbortPercent: 100, AbortStatus: abort}
		}
		return Config{
			Listeners: []Listener{
				{Name: "front", Address: "127.0.0.1:0", Direction: Inbound, TCPCluster: "inner"},
				{Name: "inner", Internal: true, Direction: Inbound, VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{inner}}}},
			},
			Clusters: []Cluster{
				{Name: "inner", Endpoints: []Endpoint{{Address: "inner:80", Internal: "inner"}}},
				{Name: "app", Endpoints: []Endpoint{{Address: app.Listener.Addr().String()}}},
			},
		}
	}
	p, front := startProxy(t, cfg(0))
	get := func() int {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + front + "/x")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("through the internal listener: %d", code)
	}
	if err := p.Update(cfg(http.StatusTeapot), "2", nil); err != nil {
		t.Fatal(err)
	}
	if code := get(); code != http.StatusTeapot {
		t.Errorf("after the update: %d, want the new route's %d", code, http.StatusTeapot)
	}
	// A new internal listener and the cluster that reaches it, in one
	// update: requests reach it at once. (This cannot hit the instant
	// before its server starts; TestSocketHoldsEarlyConnections does.)
	moved := cfg(0)
	moved.Listeners[1].Name, moved.Clusters[0].Name = "inner2", "inner2"
	moved.Listeners[0].TCPCluster, moved.Clusters[0].Endpoints[0].Internal = "inner2", "inner2"
	if err := p.Update(moved, "3", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if code := get(); code != http.StatusOK {
			t.Errorf("request %d after adding inner2: %d", i, code)
		}
	}
	gone := cfg(0)
	gone.Listeners = gone.Listeners[:1]
	gone.Clusters[0].Endpoints = []Endpoint{{Address: app.Listener.Addr().String()}}
	if err := p.Update(gone, "4", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.internal.dial(context.Background(), "inner2", ""); err == nil || !strings.Contains(err.Error(), "not listening") {
		t.Errorf("dial of a removed internal listener: %v", err)
	}
}

// TestInternalEndpointsNeverDialTheNetwork: a cluster of internal
// endpoints fails a dial it cannot make internally (the endpoint removed,
// its listener gone) rather than connect to the id's address, where
// something else may listen.
func TestInternalEndpointsNeverDialTheNetwork(t *testing.T) {
	var accepted atomic.Int64
	addr := serveTCP(t, func(c net.Conn) { accepted.Add(1) })
	cfg := Config{Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: addr, Internal: "gone"}}}}}
	cfg.Normalize()
	c, err := newCluster(cfg.Clusters[0], newInternals())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.dial(context.Background(), "tcp", addr); err == nil || !strings.Contains(err.Error(), "not listening") {
		t.Errorf("dial with no such internal listener: %v", err)
	}
	c.setEndpoints(nil) // an update removed it between pick and dial
	if _, err := c.dial(context.Background(), "tcp", addr); err == nil || !strings.Contains(err.Error(), "no internal endpoint") {
		t.Errorf("dial of a removed internal endpoint: %v", err)
	}
	if _, err := c.dialTCP(context.Background(), &endpoint{addr: addr, internal: "gone"}, ""); err == nil {
		t.Error("a TCP dial of an internal endpoint with no listener succeeded")
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections reached the id's address over the network", n)
	}
	mixed := Config{Listeners: []Listener{{Name: "i", Internal: true, Direction: Inbound, TCPCluster: "c"}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "a:1", Internal: "i"}, {Address: "b:1"}}}}}
	mixed.Normalize()
	if err := mixed.Validate(); err == nil || !strings.Contains(err.Error(), "all internal or none") {
		t.Errorf("a cluster of internal and network endpoints: %v", err)
	}
}

// TestSocketHoldsEarlyConnections: a connection to an internal listener
// an update has bound but not yet started serving waits for its server
// instead of being closed (the update's clusters dial it at once).
func TestSocketHoldsEarlyConnections(t *testing.T) {
	reg := newInternals()
	s, err := reg.listen("early", func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The dial returns once the socket has taken the connection, which
	// no server serves yet.
	c, err := reg.dial(context.Background(), "early", "spiffe://td/ns/ns/sa/a")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := s.serveWith()
	got := make(chan net.Conn, 1)
	go func() {
		if sc, err := v.Accept(); err == nil {
			got <- sc
		}
	}()
	select {
	case sc := <-got:
		defer sc.Close()
		if src, ok := internalSource(sc); !ok || src != "spiffe://td/ns/ns/sa/a" {
			t.Errorf("accepted connection's source %q, %v", src, ok)
		}
		go c.Write([]byte("x"))
		if _, err := io.ReadFull(sc, make([]byte, 1)); err != nil {
			t.Errorf("read on the held connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection made before the server started never reached it")
	}
}

// chain is TestWaypoint's proxies: a destination node ending tunnels to
// an HTTP application for the waypoint's identity only, and the waypoint
// of "svc:80" (RBAC admitting client and other to their paths, an abort
// on /abort) in front of it.
type chain struct {
	served  *atomic.Int64 // requests the application served
	end, wp *Proxy
	endAddr string
	wpAddr  string
	app     string
	issue   func(name string, peers ...string) *TLS
	id      func(name string) string
}

func waypointChain(t testing.TB) *chain {
	dir := t.TempDir()
	ca, err := identity.NewCA("td", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ch := &chain{served: new(atomic.Int64), id: func(name string) string { return identity.SPIFFEID("td", "ns", name) }}
	ch.issue = func(name string, peers ...string) *TLS {
		f := identity.FilesIn(dir, name)
		if _, err := os.Stat(f.Cert); err != nil {
			if err := ca.IssueFiles(f, ch.id(name), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		return &TLS{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA, AllowedIDs: peers}
	}
	issue, id := ch.issue, ch.id
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch.served.Add(1)
		io.WriteString(w, "app saw "+r.Host+r.URL.Path)
	}))
	t.Cleanup(app.Close)
	ch.app = app.Listener.Addr().String()
	ch.end, ch.endAddr = startProxy(t, Config{
		Listeners: []Listener{{Name: "hbone", Direction: Inbound, Codec: CodecHTTP2, TLS: issue("node-b"),
			RBAC:         &RBAC{Policies: []Policy{{Name: "waypoint", Principals: []string{id("waypoint")}, Hosts: []string{"pod-1:80"}}}},
			VirtualHosts: []VirtualHost{{Name: "pod-1", Domains: []string{"pod-1:80"}, Routes: []Route{{Connect: true, Cluster: "pod-1"}}}}}},
		Clusters: []Cluster{{Name: "pod-1", Endpoints: []Endpoint{{Address: ch.app}}}},
	})
	ch.wp, ch.wpAddr = startProxy(t, Config{
		Listeners: []Listener{
			{Name: "hbone", Direction: Inbound, Codec: CodecHTTP2, TLS: issue("waypoint"),
				RBAC:         &RBAC{Policies: []Policy{{Name: "svc", Principals: []string{id("client"), id("other")}, Hosts: []string{"svc:80"}}}},
				VirtualHosts: []VirtualHost{{Name: "svc", Domains: []string{"svc:80"}, Routes: []Route{{Connect: true, Cluster: "main"}}}}},
			{Name: "main", Internal: true, Direction: Inbound,
				RBAC: &RBAC{Policies: []Policy{
					{Name: "client", Principals: []string{id("client")}, PathPrefixes: []string{"/allowed", "/abort"}},
					{Name: "other", Principals: []string{id("other")}, PathPrefixes: []string{"/other"}},
				}},
				VirtualHosts: []VirtualHost{{Name: "svc", Domains: []string{"svc:80"}, Routes: []Route{
					{PathPrefix: "/abort", Cluster: "svc", Fault: &Fault{AbortPercent: 100, AbortStatus: http.StatusTeapot}},
					{Cluster: "svc"},
				}}}},
			{Name: "originate|pod-1", Internal: true, Direction: Outbound, TCPCluster: "node-b", TCPTunnel: "pod-1:80"},
		},
		Clusters: []Cluster{
			{Name: "main", Endpoints: []Endpoint{{Address: "svc:80", Internal: "main"}}},
			{Name: "svc", Endpoints: []Endpoint{{Address: "10.0.0.1:80", Internal: "originate|pod-1"}}},
			{Name: "node-b", HTTP2: true, TLS: issue("waypoint", id("node-b")), Endpoints: []Endpoint{{Address: ch.endAddr}}},
		},
	})
	return ch
}

// caller starts the L4 proxy of the workload name, whose listener
// tunnels to the waypoint under name's identity, and returns its address.
func (ch *chain) caller(t testing.TB, name string) string {
	_, out := startProxy(t, Config{
		Listeners: []Listener{{Name: "out", Direction: Outbound, TCPCluster: "waypoint", TCPTunnel: "svc:80"}},
		Clusters:  []Cluster{{Name: "waypoint", HTTP2: true, TLS: ch.issue(name, ch.id("waypoint")), Endpoints: []Endpoint{{Address: ch.wpAddr}}}},
	})
	return out
}

// TestPipePair: an internal connection behaves as TCP does where the
// proxy relies on it: a half-close ends the peer's reads only, a close
// fails the peer's writes, deadlines end blocked reads.
func TestPipePair(t *testing.T) {
	a, b := pipePair()
	defer a.Close()
	defer b.Close()
	go func() {
		io.WriteString(a, "hello")
		a.CloseWrite()
	}()
	if got, err := io.ReadAll(b); string(got) != "hello" || err != nil {
		t.Fatalf("read %q, %v before the half-close's EOF", got, err)
	}
	go func() {
		io.WriteString(b, "world") // a still reads after its half-close
		b.Close()
	}()
	if got, err := io.ReadAll(a); string(got) != "world" || err != nil {
		t.Fatalf("read %q, %v after a's half-close", got, err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("a write to a closed peer succeeded")
	}
	c, d := pipePair()
	defer c.Close()
	defer d.Close()
	_ = d.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past its deadline: %v", err)
	}
}
