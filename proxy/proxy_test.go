package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startProxy runs a proxy with one listener named "l" on a free loopback
// port and stops it when the test ends. It returns the listener's address.
func startProxy(t testing.TB, cfg Config, opts ...Option) (*Proxy, string) {
	t.Helper()
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Address == "" && !cfg.Listeners[i].Internal {
			cfg.Listeners[i].Address = "127.0.0.1:0"
		}
	}
	p, err := New(cfg, append([]Option{WithDrainTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return p, p.Addr(cfg.Listeners[0].Name)
}

// oneRoute is a config with listener "l" sending everything to upstream.
func oneRoute(upstream string, domains ...string) Config {
	if len(domains) == 0 {
		domains = []string{"*"}
	}
	return Config{
		Node: "test",
		Listeners: []Listener{{
			Name: "l", Direction: Outbound,
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: domains, Routes: []Route{{Cluster: "c"}}}},
		}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: upstream}}}},
	}
}

// serveTCP accepts loopback connections until the test ends, each handled
// on its own goroutine (which closes it), and returns the address.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func TestRoutingByHostAndPath(t *testing.T) {
	mk := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	cfg := Config{
		Listeners: []Listener{{
			Name: "l", Direction: Outbound,
			VirtualHosts: []VirtualHost{
				{Name: "server", Domains: []string{"server"}, Routes: []Route{
					{PathPrefix: "/api/", Cluster: "b"},
					{Cluster: "a"},
				}},
				{Name: "other", Domains: []string{"other:9000"}, Routes: []Route{{Cluster: "c"}}},
			},
		}},
		Clusters: []Cluster{
			{Name: "a", Endpoints: []Endpoint{{Address: hostOf(a)}}},
			{Name: "b", Endpoints: []Endpoint{{Address: hostOf(b)}}},
			{Name: "c", Endpoints: []Endpoint{{Address: hostOf(c)}}},
		},
	}
	p, addr := startProxy(t, cfg)
	cases := []struct {
		host, path string
		code       int
		body       string
	}{
		{"server", "/", 200, "a"},
		{"server:8080", "/x", 200, "a"}, // port stripped for a port-less domain
		{"SERVER", "/", 200, "a"},
		{"server", "/api/v1", 200, "b"},
		{"other:9000", "/", 200, "c"},
		{"other", "/", 404, ""},
		{"unknown", "/", 404, ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", "http://"+addr+c.path, nil)
		req.Host = c.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.code == 200 && string(body) != c.body) {
			t.Errorf("%s%s: got %d %q, want %d %q", c.host, c.path, resp.StatusCode, body, c.code, c.body)
		}
		if c.code == 404 && resp.Header.Get("X-Meshbench-Proxy-Error") == "" {
			t.Errorf("%s%s: 404 without the proxy error header", c.host, c.path)
		}
	}
	if s := p.Stats().Listeners["l"]; s.Requests != uint64(len(cases)) || s.NoRoute != 2 || s.Responses2xx != 5 {
		t.Errorf("stats = %+v", s)
	}
}

// rawExchange sends a raw HTTP/1.1 request and returns the raw response
// head, so that hop-by-hop headers can be checked without Go's client
// touching them.
func rawExchange(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d\n", resp.StatusCode)
	_ = resp.Header.Write(&sb)
	return sb.String()
}

func TestHopByHopAndForwardedHeaders(t *testing.T) {
	var got atomic.Pointer[http.Header]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		got.Store(&h)
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "kept")
	}))
	defer up.Close()
	_, addr := startProxy(t, oneRoute(hostOf(up)))
	head := rawExchange(t, addr, "GET /p HTTP/1.1\r\nHost: server:8080\r\n"+
		"Connection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\n"+
		"Upgrade: h2c\r\nX-Forwarded-For: 1.2.3.4\r\nX-Keep: yes\r\n\r\n")
	h := *got.Load()
	for _, name := range []string{"X-Custom-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v := h.Get(name); v != "" {
			t.Errorf("upstream received hop-by-hop header %s: %q", name, v)
		}
	}
	checks := map[string]string{
		"Te":                "trailers",
		"X-Keep":            "yes",
		"X-Forwarded-For":   "1.2.3.4, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "server:8080",
		"Host":              "server:8080",
	}
	for k, want := range checks {
		if v := h.Get(k); v != want {
			t.Errorf("upstream header %s = %q, want %q", k, v, want)
		}
	}
	if strings.Contains(head, "X-Resp-Hop") || strings.Contains(head, "Keep-Alive: timeout") {
		t.Errorf("downstream received the upstream's hop-by-hop headers:\n%s", head)
	}
	if !strings.Contains(head, "X-End-To-End: kept") {
		t.Errorf("end-to-end response header lost:\n%s", head)
	}
}

func TestForwardedForNone(t *testing.T) {
	var xff atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		xff.Store(strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
	}))
	defer up.Close()
	cfg := oneRoute(hostOf(up))
	cfg.Listeners[0].ForwardedFor = ForwardedNone
	_, addr := startProxy(t, cfg)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Forwarded-For", "9.9.9.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := xff.Load(); got != "9.9.9.9" {
		t.Errorf("X-Forwarded-For = %q, want it untouched", got)
	}
}

func TestBodiesStatusAndPooling(t *testing.T) {
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Len", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	_, addr := startProxy(t, oneRoute(hostOf(up)))
	payload := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := 0; i < 50; i++ {
		resp, err := client.Post("http://"+addr+"/echo", "application/octet-stream", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || string(body) != payload || resp.Header.Get("X-Len") != fmt.Sprint(len(payload)) {
			t.Fatalf("request %d: status %d, %d body bytes", i, resp.StatusCode, len(body))
		}
	}
	// net/http returns a connection to the pool just after its response
	// body is read, so a request right behind may dial once more; without
	// pooling there would be 50.
	if n := conns.Load(); n > 3 {
		t.Errorf("upstream saw %d connections for 50 sequential requests, want at most 3 (keep-alive pool)", n)
	}
}

func TestUpstreamFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	cfg := Config{
		Listeners: []Listener{{
			Name: "l", Direction: Outbound, RequestTimeout: Duration(5 * time.Second),
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
				{PathPrefix: "/slow", Cluster: "slow", Timeout: Duration(100 * time.Millisecond)},
				{PathPrefix: "/down", Cluster: "down"},
			}}},
		}},
		Clusters: []Cluster{
			{Name: "slow", Endpoints: []Endpoint{{Address: hostOf(slow)}}},
			{Name: "down", Endpoints: []Endpoint{{Address: closed}}},
		},
	}
	p, addr := startProxy(t, cfg)
	// /slow answers 200 after 2s: a 504 means the route's 100ms timeout
	// fired, not the listener's 5s one (no clock needed to tell).
	for path, want := range map[string]int{"/slow": http.StatusGatewayTimeout, "/down": http.StatusServiceUnavailable} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
	}
	s := p.Stats().Listeners["l"]
	if s.Timeouts != 1 || s.UpstreamErrors != 1 || s.Responses5xx != 2 {
		t.Errorf("stats = %+v", s)
	}
}

func TestDownstreamLimits(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	cfg := oneRoute(hostOf(up))
	cfg.Listeners[0].IdleTimeout = Duration(200 * time.Millisecond)
	cfg.Listeners[0].HeaderTimeout = Duration(200 * time.Millisecond)
	cfg.Listeners[0].MaxHeaderBytes = 4 << 10
	_, addr := startProxy(t, cfg)

	// Oversized headers: 431, never a crash.
	head := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	if !strings.HasPrefix(head, "431") {
		t.Errorf("oversized header: got %q, want 431", strings.SplitN(head, "\n", 2)[0])
	}
	// A connection that never finishes its headers (slowloris) is closed.
	for _, partial := range []string{"", "GET / HTTP/1.1\r\nHost: x\r\n"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, partial)
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("connection with partial request %q was not closed by the header/idle timeout", partial)
		}
	}
}

func TestGracefulDrain(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	cfg := oneRoute(hostOf(up))
	cfg.Listeners[0].Address = "127.0.0.1:0"
	p, err := New(cfg, WithDrainTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for !p.Ready() {
		time.Sleep(time.Millisecond)
	}
	addr := p.Addr("l")
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	for p.Stats().Listeners["l"].InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel() // SIGTERM in the proxy role
	// The drain has begun (the proxy no longer reports ready) while the
	// request is still in flight; only then may it finish.
	for deadline := time.Now().Add(10 * time.Second); p.Ready(); {
		if time.Now().After(deadline) {
			t.Fatal("the proxy still reports ready 10s after its context ended")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request during drain got %q, want done", body)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepts after drain")
	}
}

func TestAdminEndpoints(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	cfg := oneRoute(hostOf(up))
	cfg.Admin = "127.0.0.1:0"
	p, _ := startProxy(t, cfg)
	admin := p.Addr(AdminListener)
	for path, want := range map[string]string{"/ready": "ready", "/stats": `"listeners"`, "/config_dump": `"clusters"`} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection": {"close, X-A", "x-b"},
		"X-A":        {"1"},
		"X-B":        {"2"},
		"X-C":        {"3"},
		"Te":         {"gzip, trailers"},
		"Trailer":    {"X-T"},
		"Upgrade":    {"websocket"},
		"Keep-Alive": {"timeout=5"},
	}
	removeHopHeaders(h)
	want := http.Header{"X-C": {"3"}, "Te": {"trailers"}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", h, want)
	}
}

// TestListenerNamesAreUnique: listeners are kept by name, so a second
// listener of a name would silently replace the first and leave its port
// unserved; the configuration is refused instead.
func TestListenerNamesAreUnique(t *testing.T) {
	c := Config{Listeners: []Listener{
		{Name: "out", Address: "127.0.0.1:0", Direction: Outbound, Codec: CodecAuto, ForwardedFor: ForwardedAppend},
		{Name: "out", Address: "127.0.0.1:0", Direction: Outbound, Codec: CodecAuto, ForwardedFor: ForwardedAppend},
	}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `listeners[1]: name "out" is empty or not unique`) {
		t.Errorf("two listeners named out: %v", err)
	}
	c.Listeners[1].Name = "out2"
	if err := c.Validate(); err != nil {
		t.Errorf("distinct names: %v", err)
	}
}

// TestListenerKeepaliveNeedsHTTP2: a listener's HTTP/2 keepalive on an
// HTTP/1.1-only listener, or without an interval and timeout, would never
// ping; it is refused.
func TestListenerKeepaliveNeedsHTTP2(t *testing.T) {
	l := Listener{Name: "in", Address: "127.0.0.1:0", Direction: Inbound, Codec: CodecHTTP2, ForwardedFor: ForwardedAppend,
		HTTP2Keepalive: &Keepalive{Interval: Duration(time.Second), Timeout: Duration(time.Second)}}
	if err := (&Config{Listeners: []Listener{l}}).Validate(); err != nil {
		t.Errorf("HTTP/2 with a keepalive: %v", err)
	}
	for name, change := range map[string]func(*Listener){
		"http1":      func(l *Listener) { l.Codec = CodecHTTP1 },
		"no timeout": func(l *Listener) { l.HTTP2Keepalive = &Keepalive{Interval: Duration(time.Second)} },
	} {
		bad := l
		change(&bad)
		if err := (&Config{Listeners: []Listener{bad}}).Validate(); err == nil || !strings.Contains(err.Error(), "http2Keepalive needs HTTP/2") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
