package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// counting is an upstream that counts its requests and answers with code.
type counting struct {
	*httptest.Server
	n atomic.Int64
}

func upstream(t *testing.T, code int, delay time.Duration) *counting {
	t.Helper()
	c := &counting{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		w.WriteHeader(code)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(c.Close)
	return c
}

// clusterOf is a config whose single route sends to one cluster of the
// given upstreams; mutate adjusts it.
func clusterOf(mutate func(*Config), ups ...*counting) Config {
	var eps []Endpoint
	for _, u := range ups {
		eps = append(eps, Endpoint{Address: hostOf(u.Server)})
	}
	cfg := Config{
		Listeners: []Listener{{Name: "l", Direction: Outbound,
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "c"}}}}}},
		Clusters: []Cluster{{Name: "c", Endpoints: eps}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

func do(t *testing.T, method, url string, hdr map[string]string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(""))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestRetriesOnlyWhereAllowed(t *testing.T) {
	bad, good := upstream(t, 503, 0), upstream(t, 200, 0)
	p, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Listeners[0].VirtualHosts[0].Routes[0].Retry = &RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 2}
	}, bad, good))
	for i := 0; i < 20; i++ {
		if code, _ := do(t, "GET", "http://"+addr+"/", nil); code != 200 {
			t.Fatalf("GET %d: %d despite a retry policy and a healthy endpoint", i, code)
		}
	}
	if r := p.Stats().Clusters["c"].Retries; r == 0 {
		t.Error("no retries counted")
	}
	// POST is not idempotent: never retried unless the policy names it.
	failures := 0
	for i := 0; i < 20; i++ {
		if code, _ := do(t, "POST", "http://"+addr+"/", nil); code == 503 {
			failures++
		}
	}
	if failures == 0 {
		t.Error("POST requests were retried without the policy allowing it")
	}
}

func TestRetryAttemptsAndBudget(t *testing.T) {
	bad := upstream(t, 503, 0)
	_, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Listeners[0].VirtualHosts[0].Routes[0].Retry = &RetryPolicy{RetryOn: []string{"gateway-error"}, NumRetries: 3}
	}, bad))
	for i := 0; i < 5; i++ {
		do(t, "GET", "http://"+addr+"/", nil)
	}
	if n := bad.n.Load(); n != 20 {
		t.Errorf("upstream saw %d attempts for 5 requests with 3 retries each, want 20", n)
	}

	// Under concurrency, retries in flight are capped by the budget: no
	// retry storm against a failing, slow upstream.
	slowBad := upstream(t, 503, 50*time.Millisecond)
	p, addr2 := startProxy(t, clusterOf(func(c *Config) {
		c.Listeners[0].VirtualHosts[0].Routes[0].Retry = &RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 5}
		c.Clusters[0].CircuitBreakers = &CircuitBreakers{RetryBudgetPercent: 10, MinRetryConcurrency: 1}
	}, slowBad))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); do(t, "GET", "http://"+addr2+"/", nil) }()
	}
	wg.Wait()
	st := p.Stats().Clusters["c"]
	if st.RetryOverflow == 0 || slowBad.n.Load() >= 20*6 {
		t.Errorf("retry budget not applied: %d attempts, %+v", slowBad.n.Load(), st)
	}
}

func TestCircuitBreakerFailsFast(t *testing.T) {
	release := make(chan struct{})
	var inflight atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		inflight.Add(1)
		<-release
	}))
	defer up.Close()
	p, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Clusters[0].CircuitBreakers = &CircuitBreakers{MaxRequests: 2}
	}, &counting{Server: up}))
	codes := make(chan int, 5)
	for i := 0; i < 5; i++ {
		go func() { code, _ := do(t, "GET", "http://"+addr+"/", nil); codes <- code }()
	}
	overflow := 0
	for i := 0; i < 3; i++ {
		select {
		case code := <-codes:
			if code == 503 {
				overflow++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("requests beyond max_requests were not answered at once")
		}
	}
	close(release)
	for i := 0; i < 2; i++ {
		if code := <-codes; code != 200 {
			t.Errorf("admitted request got %d", code)
		}
	}
	if overflow != 3 || p.Stats().Clusters["c"].Overflow != 3 || inflight.Load() != 2 {
		t.Errorf("overflow %d (stats %d), upstream saw %d; want 3, 3, 2", overflow, p.Stats().Clusters["c"].Overflow, inflight.Load())
	}
}

// TestConnectionAndPendingLimits: with one connection and one pending
// request allowed, a third concurrent request is refused at once.
func TestConnectionAndPendingLimits(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer up.Close()
	p, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Clusters[0].CircuitBreakers = &CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1}
	}, &counting{Server: up}))
	codes := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() { code, _ := do(t, "GET", "http://"+addr+"/", nil); codes <- code }()
	}
	select {
	case code := <-codes:
		if code != 503 {
			t.Errorf("first answer %d, want the overflow 503", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request beyond connections + pending was not refused at once")
	}
	close(release)
	for i := 0; i < 2; i++ {
		if code := <-codes; code != 200 {
			t.Errorf("admitted request: %d", code)
		}
	}
	if o := p.Stats().Clusters["c"].Overflow; o != 1 {
		t.Errorf("overflow %d, want 1", o)
	}
}

func TestOutlierEjection(t *testing.T) {
	bad, good := upstream(t, 500, 0), upstream(t, 200, 0)
	p, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Clusters[0].Outlier = &Outlier{Consecutive5xx: 3, BaseEjectionTime: Duration(10 * time.Second), MaxEjectionPercent: 50}
	}, bad, good))
	failed := 0
	for i := 0; i < 40; i++ {
		if code, _ := do(t, "GET", "http://"+addr+"/", nil); code != 200 {
			failed++
		}
	}
	if failed != 3 || p.Stats().Clusters["c"].Ejections != 1 {
		t.Errorf("%d failures and %d ejections; want 3 failures (then ejection) and 1 ejection", failed, p.Stats().Clusters["c"].Ejections)
	}
}

func TestLeastRequestPrefersTheFastEndpoint(t *testing.T) {
	slow, fast := upstream(t, 200, 40*time.Millisecond), upstream(t, 200, 0)
	_, addr := startProxy(t, clusterOf(func(c *Config) { c.Clusters[0].LBPolicy = LBLeastRequest }, slow, fast))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				do(t, "GET", "http://"+addr+"/", nil)
			}
		}()
	}
	wg.Wait()
	if s, f := slow.n.Load(), fast.n.Load(); f < 3*s {
		t.Errorf("least request sent %d to the slow and %d to the fast endpoint; want the fast one to take most", s, f)
	}
}

// TestLeastRequestForgetsOldLatency: an endpoint's latency decays while it
// is not picked, so one that was slow long ago is tried again (its score
// below a fast one's), while one slow a second ago is still avoided.
func TestLeastRequestForgetsOldLatency(t *testing.T) {
	now := time.Now()
	ep := func(lat time.Duration, ago time.Duration) *endpoint {
		e := &endpoint{}
		e.lat.observe(lat, now.Add(-ago))
		return e
	}
	fast := ep(time.Millisecond, 0)
	if old := ep(200*time.Millisecond, 30*time.Second); old.score(now) >= fast.score(now) {
		t.Errorf("slow 30 s ago: score %g, want below the fast endpoint's %g", old.score(now), fast.score(now))
	}
	// Once tried again and fast, it is fast at once: the sample blends
	// with the decayed estimate, not the old one.
	again := ep(200*time.Millisecond, 30*time.Second)
	again.lat.observe(time.Millisecond, now)
	if lat := time.Duration(again.lat.read(now, false)); lat > 1100*time.Microsecond || lat < 900*time.Microsecond {
		t.Errorf("a 1 ms answer 30 s after slow ones leaves an estimate of %s, want about 1 ms", lat)
	}
	// Under steady load a sample moves the estimate by ewmaAlpha.
	steady := ep(10*time.Millisecond, 0)
	steady.lat.observe(20*time.Millisecond, now)
	if lat := time.Duration(steady.lat.read(now, false)); lat < 12900*time.Microsecond || lat > 13100*time.Microsecond {
		t.Errorf("10 ms then 20 ms at once: estimate %s, want 13 ms", lat)
	}
	if recent := ep(200*time.Millisecond, time.Second); recent.score(now) <= 100*fast.score(now) {
		t.Errorf("slow 1 s ago: score %g, want far above the fast endpoint's %g", recent.score(now), fast.score(now))
	}
	// A request in flight stops the decay: an endpoint gone silent does
	// not come to look fast while its requests wait.
	waiting := ep(200*time.Millisecond, 30*time.Second)
	waiting.active.Add(1)
	if waiting.score(now) <= 100*fast.score(now) {
		t.Errorf("slow 30 s ago with a request in flight: score %g, want far above the fast endpoint's %g", waiting.score(now), fast.score(now))
	}
	if unmeasured := (&endpoint{}); unmeasured.score(now) != 1 {
		t.Errorf("an unmeasured endpoint scores %g, want 1 (active requests alone)", unmeasured.score(now))
	}
}

func TestFaultInjection(t *testing.T) {
	up := upstream(t, 200, 0)
	p, addr := startProxy(t, Config{
		Listeners: []Listener{{Name: "l", Direction: Outbound, VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
			{PathPrefix: "/delay", Cluster: "c", Fault: &Fault{DelayPercent: 100, Delay: Duration(100 * time.Millisecond)}},
			{PathPrefix: "/abort", Cluster: "c", Fault: &Fault{AbortPercent: 50, AbortStatus: 503}},
			{PathPrefix: "/grpc", Cluster: "c", Fault: &Fault{AbortPercent: 100, AbortGRPCStatus: 14}},
			{PathPrefix: "/gated", Cluster: "c", Fault: &Fault{AbortPercent: 100, AbortStatus: 418, Header: "X-Chaos"}},
		}}}}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: hostOf(up.Server)}}}},
	})
	start := time.Now()
	if code, _ := do(t, "GET", "http://"+addr+"/delay", nil); code != 200 || time.Since(start) < 100*time.Millisecond {
		t.Errorf("delay fault: %d after %s", code, time.Since(start))
	}
	aborted := 0
	for i := 0; i < 400; i++ {
		if code, _ := do(t, "GET", "http://"+addr+"/abort", nil); code == 503 {
			aborted++
		}
	}
	// Binomial(400, 0.5): 140..260 is more than 6 standard deviations.
	if aborted < 140 || aborted > 260 {
		t.Errorf("50%% abort fault aborted %d of 400", aborted)
	}
	if _, h := do(t, "GET", "http://"+addr+"/grpc", nil); h.Get("Grpc-Status") != "14" {
		t.Errorf("gRPC abort: grpc-status %q, want 14", h.Get("Grpc-Status"))
	}
	if code, _ := do(t, "GET", "http://"+addr+"/gated", nil); code != 200 {
		t.Errorf("header-gated fault applied without the header: %d", code)
	}
	if code, _ := do(t, "GET", "http://"+addr+"/gated", map[string]string{"X-Chaos": "1"}); code != 418 {
		t.Errorf("header-gated fault not applied with the header: %d", code)
	}
	if st := p.Stats().Listeners["l"]; st.FaultDelays != 1 || st.FaultAborts != uint64(aborted)+2 {
		t.Errorf("fault stats %+v", st)
	}
}

// mtlsClient returns an HTTP client presenting id's certificate.
func mtlsClient(t *testing.T, ca *identity.CA, dir, name, id string) *http.Client {
	f := identity.FilesIn(dir, name)
	if err := ca.IssueFiles(f, id, time.Hour); err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewSource(f)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: src.ClientConfig(nil)}}
}

func TestRBAC(t *testing.T) {
	up := upstream(t, 200, 0)
	dir := t.TempDir()
	ca, _ := identity.NewCA("td", time.Hour)
	sf := identity.FilesIn(dir, "server")
	_ = ca.IssueFiles(sf, identity.SPIFFEID("td", "ns", "server"), time.Hour)
	client, other := identity.SPIFFEID("td", "ns", "client"), identity.SPIFFEID("td", "ns", "other")
	p, addr := startProxy(t, Config{
		Listeners: []Listener{{Name: "in", Direction: Inbound,
			TLS: &TLS{CertFile: sf.Cert, KeyFile: sf.Key, CAFile: sf.CA},
			RBAC: &RBAC{Policies: []Policy{
				{Name: "client-reads-api", Principals: []string{client}, PathPrefixes: []string{"/api"}, Methods: []string{"GET"}},
				// Hosts are exact, as Envoy's :authority exact matcher.
				{Name: "client-admins-one-host", Principals: []string{client}, Paths: []string{"/admin"}, Hosts: []string{"admin.example"}},
			}},
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "c"}}}}}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: hostOf(up.Server)}}}},
	})
	cc, oc := mtlsClient(t, ca, dir, "client", client), mtlsClient(t, ca, dir, "other", other)
	cases := []struct {
		c                  *http.Client
		method, host, path string
		want               int
	}{
		{cc, "GET", "", "/api/x", 200},
		{cc, "GET", "", "/admin", 403},
		{cc, "POST", "", "/api/x", 403},
		{oc, "GET", "", "/api/x", 403},
		{cc, "DELETE", "admin.example", "/admin", 200},
		{cc, "GET", "Admin.Example", "/admin", 403},
		{cc, "GET", "other.example", "/admin", 403},
		{oc, "GET", "admin.example", "/admin", 403},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, "https://"+addr+c.path, nil)
		req.Host = c.host
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s%s: %d, want %d", c.method, c.host, c.path, resp.StatusCode, c.want)
		}
	}
	if d := p.Stats().Listeners["in"].Denied; d != 6 || up.n.Load() != 2 {
		t.Errorf("denied %d (want 6), upstream saw %d (want 2)", d, up.n.Load())
	}
}

func TestMetricsAccessLogAndTraceparent(t *testing.T) {
	var mu sync.Mutex
	var traces []string
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traces = append(traces, r.Header.Get("Traceparent"))
		mu.Unlock()
	}))
	defer up.Close()
	var logBuf syncBuffer
	cfg := clusterOf(nil, &counting{Server: up})
	cfg.Admin, cfg.Mode = "127.0.0.1:0", "sidecar"
	cfg.Listeners[0].AccessLog = true
	cfg.Listeners[0].Address = "127.0.0.1:0"
	p, err := New(cfg, WithAccessLog(&logBuf))
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	defer stop()
	addr := p.Addr("l")
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	do(t, "GET", "http://"+addr+"/a", map[string]string{"Traceparent": incoming})
	do(t, "GET", "http://"+addr+"/b", map[string]string{"Traceparent": "garbage"})
	do(t, "GET", "http://"+addr+"/c", nil)

	if !validTraceparent(traces[0]) || traces[0][:36] != incoming[:36] || traces[0] == incoming {
		t.Errorf("incoming traceparent not continued: %q", traces[0])
	}
	for _, tp := range traces[1:] {
		if !validTraceparent(tp) || tp[3:35] == incoming[3:35] {
			t.Errorf("missing or malformed traceparent not replaced by a new trace: %q", tp)
		}
	}
	body := adminMetrics(t, p)
	for _, want := range []string{
		`meshbench_requests_total{listener="l",direction="outbound",source_workload="unknown",destination="c",response_code="200",mode="sidecar"} 3`,
		`meshbench_request_duration_seconds_count{listener="l",direction="outbound",source_workload="unknown",destination="c",response_code="200",mode="sidecar"} 3`,
		`le="+Inf"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log has %d lines, want 3:\n%s", len(lines), logBuf.String())
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil || entry["path"] != "/a" || entry["code"] != float64(200) || entry["traceparent"] != traces[0] {
		t.Errorf("access log line %q: %v", lines[0], err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runProxy(t *testing.T, p *Proxy) func() {
	ctxDone := make(chan struct{})
	errc := make(chan error, 1)
	ctx, cancel := contextWithCancel()
	go func() { errc <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return func() {
		cancel()
		close(ctxDone)
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestBackendKilledMidLoad(t *testing.T) {
	a, b := upstream(t, 200, 0), upstream(t, 200, 0)
	p, addr := startProxy(t, clusterOf(func(c *Config) {
		c.Listeners[0].VirtualHosts[0].Routes[0].Retry = &RetryPolicy{RetryOn: []string{"connect-failure", "reset", "gateway-error"}, NumRetries: 2}
		c.Clusters[0].Outlier = &Outlier{Consecutive5xx: 2, ConsecutiveGatewayFailure: 2, BaseEjectionTime: Duration(30 * time.Second), MaxEjectionPercent: 50}
	}, a, b))
	// A fixed number of requests, the backend killed after 400 of them:
	// what fails is counted against the kill, not against how many
	// requests a busy machine managed in some window.
	const requests, killAfter = 2000, 400
	var sent, done, ok atomic.Int64
	killed := make(chan struct{})
	go func() {
		for done.Load() < killAfter {
			time.Sleep(time.Millisecond)
		}
		a.CloseClientConnections()
		a.Close()
		close(killed)
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(1) <= requests {
				resp, err := http.Get("http://" + addr + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					}
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	<-killed
	if failed := requests - ok.Load(); failed > 2 {
		t.Errorf("%d of %d requests failed with a backend killed mid-load (retries on connect-failure and reset, outlier ejection); want at most 2", failed, requests)
	}
	if p.Stats().Clusters["c"].Ejections == 0 {
		t.Error("the killed backend was never ejected")
	}
}

func TestManyIdleSlowConnections(t *testing.T) {
	up := upstream(t, 200, 0)
	cfg := clusterOf(nil, up)
	cfg.Listeners[0].HeaderTimeout = Duration(3 * time.Second)
	_, addr := startProxy(t, cfg)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never finish
		conns = append(conns, c)
	}
	for i := 0; i < 50; i++ {
		if code, _ := do(t, "GET", "http://"+addr+"/", nil); code != 200 {
			t.Fatalf("request %d with 1000 slow connections open: %d", i, code)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	up := upstream(t, 200, 0)
	cfg := clusterOf(nil, up)
	cfg.Listeners[0].MaxRequestBytes = 1024
	_, addr := startProxy(t, cfg)
	cases := map[string]string{
		"garbage":            "\x00\x01\x02 not http\r\n\r\n",
		"bad content-length": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
		"two lengths":        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"bad chunking":       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"no host":            "GET / HTTP/1.1\r\n\r\n",
		"body too large":     "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + strings.Repeat("a", 4096),
		"bad version":        "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
		"dot segments":       "GET /public/../admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"encoded dots":       "GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"encoded slash":      "GET /public%2Fadmin HTTP/1.1\r\nHost: x\r\n\r\n",
		"double slash":       "GET //admin HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	for name, raw := range cases {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: no answer and no close within 3s", name)
			continue
		}
		// 505 is the RFC's answer to an unknown HTTP version.
		if err == nil && (resp.StatusCode < 400 || resp.StatusCode >= 500) && resp.StatusCode != 505 {
			t.Errorf("%s: got %d, want a 4xx or a closed connection", name, resp.StatusCode)
		}
	}
	// The proxy still serves.
	if code, _ := do(t, "GET", "http://"+addr+"/", nil); code != 200 {
		t.Errorf("after malformed requests: %d", code)
	}
}

func FuzzRouteMatch(f *testing.F) {
	cfg := Config{
		Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", Direction: Outbound, VirtualHosts: []VirtualHost{
			{Name: "a", Domains: []string{"server", "server:8080"}, Routes: []Route{
				{Path: "/exact", Cluster: "c"}, {Regex: "/api/v[0-9]+/.*", Cluster: "c"}, {PathPrefix: "/p", Cluster: "c", Methods: []string{"GET"}}}},
			{Name: "b", Domains: []string{"*"}, Routes: []Route{{PathPrefix: "/", Cluster: "c"}}},
		}}},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "127.0.0.1:1"}}}},
	}
	cfg.Normalize()
	cl, _ := newCluster(cfg.Clusters[0], nil)
	l, err := newListener(cfg.Listeners[0], map[string]*cluster{"c": cl}, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"server", "SERVER:8080", "other", "", "[::1]:80", "server:"} {
		f.Add(s, "/api/v1/x", "GET")
	}
	f.Fuzz(func(t *testing.T, host, path, method string) {
		vh, r := l.match(host, path, method, nil, "")
		if r != nil && vh == nil {
			t.Fatal("route without a virtual host")
		}
		// There is a wildcard host, so every request finds a virtual host;
		// as in Envoy, a request does not fall through to another host when
		// its own has no matching route, and the wildcard's catch-all
		// matches every path that starts with "/".
		if vh == nil {
			t.Fatalf("no virtual host for %q", host)
		}
		if vh.Name == "b" && strings.HasPrefix(path, "/") && r == nil {
			t.Fatalf("no route for %q %q on the wildcard host", host, path)
		}
		if r != nil && r.Path != "" && path != r.Path {
			t.Fatalf("exact route %q matched %q", r.Path, path)
		}
	})
}

func FuzzHeaderRewriting(f *testing.F) {
	f.Add("keep-alive, X-Hop", "trailers, gzip", "x-spoof")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, connection, te, extra string) {
		h := http.Header{"Connection": {connection}, "Te": {te}, "Keep-Alive": {"1"}, "Upgrade": {"x"}, "X-Meshbench-Source": {extra}}
		for _, name := range strings.Split(connection, ",") {
			if n := strings.TrimSpace(name); n != "" {
				h.Set(n, "hop")
			}
		}
		l := &listener{cfg: Listener{ForwardedFor: ForwardedAppend}, proto: "http"}
		r := &http.Request{Header: h, Host: "server", RemoteAddr: "10.0.0.2:1"}
		vh := &VirtualHost{RequestHeadersToRemove: []string{"X-Meshbench-Source"},
			RequestHeadersToAdd: []Header{{Name: "X-Meshbench-Source", Value: "spiffe://td/ns/a/sa/b"}}}
		l.requestHeaders(r, vh) // what ServeHTTP does
		for _, name := range []string{"Connection", "Keep-Alive", "Upgrade", "Transfer-Encoding", "Proxy-Connection"} {
			if _, ok := h[name]; ok {
				t.Fatalf("%s survived", name)
			}
		}
		for _, name := range strings.Split(connection, ",") {
			if n := http.CanonicalHeaderKey(strings.TrimSpace(name)); n != "" && n != "X-Meshbench-Source" && h.Get(n) == "hop" {
				t.Fatalf("header %q named by Connection survived", n)
			}
		}
		if v := h["Te"]; len(v) > 0 && (len(v) != 1 || v[0] != "trailers") {
			t.Fatalf("TE kept as %q", v)
		}
		if v := h.Values("X-Meshbench-Source"); len(v) != 1 || v[0] != "spiffe://td/ns/a/sa/b" {
			t.Fatalf("source header after rewriting: %q", v)
		}
	})
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// TestMetricsRecordGRPCStatus: a gRPC answer's outcome is its
// grpc-status (in the trailers, or the headers of a trailers-only answer),
// which the metrics label beside the HTTP 200, so that a failing call is
// not counted as a success.
func TestMetricsRecordGRPCStatus(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trailers-only" {
			w.Header().Set("Grpc-Status", "0")
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		io.WriteString(w, "payload")
		w.Header().Set("Grpc-Status", "14")
	}))
	defer up.Close()
	cfg := clusterOf(nil, &counting{Server: up})
	cfg.Admin, cfg.Mode = "127.0.0.1:0", "sidecar"
	cfg.Listeners[0].Address = "127.0.0.1:0"
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	defer stop()
	do(t, "POST", "http://"+p.Addr("l")+"/svc/Method", nil)
	do(t, "POST", "http://"+p.Addr("l")+"/trailers-only", nil)
	do(t, "GET", "http://"+p.Addr("l")+"/plain", nil)
	body := adminMetrics(t, p)
	for _, want := range []string{
		`meshbench_requests_total{listener="l",direction="outbound",source_workload="unknown",destination="c",response_code="200",grpc_response_status="14",mode="sidecar"} 2`,
		`meshbench_requests_total{listener="l",direction="outbound",source_workload="unknown",destination="c",response_code="200",grpc_response_status="0",mode="sidecar"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

// adminMetrics is the proxy's /metrics exposition.
func adminMetrics(t *testing.T, p *Proxy) string {
	t.Helper()
	resp, err := http.Get("http://" + p.Addr(AdminListener) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
