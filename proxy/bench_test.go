package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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
	cl, _ := newCluster(cfg.Clusters[0], nil)
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
		Endpoints: []Endpoint{{Address: "a:1"}, {Address: "b:1"}, {Address: "c:1"}, {Address: "d:1"}}}, nil)
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

// rawUpstream is an HTTP/1.1 upstream that allocates nothing per
// request: it reads each request's head (the proxy sends no body for a
// GET) into a fixed buffer and writes a canned answer.
func rawUpstream(b testing.TB, answer []byte) string {
	return serveTCP(b, func(c net.Conn) {
		buf := make([]byte, 16<<10)
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if end < 0 {
					break
				}
				if _, err := c.Write(answer); err != nil {
					return
				}
				n = copy(buf, buf[end+4:n])
			}
		}
	})
}

// cannedExchange sends a canned request on c and reads the answer into
// buf: the head up to its blank line, then Content-Length bytes of body.
// It allocates nothing on success.
func cannedExchange(c net.Conn, request, buf []byte) error {
	if _, err := c.Write(request); err != nil {
		return err
	}
	n, head := 0, -1
	for head < 0 {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		head = bytes.Index(buf[:n], []byte("\r\n\r\n"))
	}
	i := bytes.Index(buf[:head], []byte("\r\nContent-Length: "))
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) || i < 0 {
		return errors.New("not a 200 with a Content-Length: " + string(buf[:head]))
	}
	length := 0
	for _, d := range buf[i+len("\r\nContent-Length: ") : head] {
		if d < '0' || d > '9' {
			break
		}
		length = length*10 + int(d-'0')
	}
	for left := head + 4 + length - n; left > 0; {
		m, err := c.Read(buf[:min(left, len(buf))])
		if err != nil {
			return err
		}
		left -= m
	}
	return nil
}

// BenchmarkProxyRequest measures the proxy's HTTP/1.1 request path for a
// 1 KiB answer over keep-alive connections. Its client and upstream
// allocate nothing per request, so allocs/op are the proxy's own (with
// net/http's client and server around it, as before, they were half of
// the count).
func BenchmarkProxyRequest(b *testing.B) {
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024))
	for _, engine := range []string{EngineNetHTTP, EngineFastHTTP} {
		b.Run(strings.ReplaceAll(engine, "/", "-"), func(b *testing.B) {
			_, addr := startProxy(b, oneRoute(rawUpstream(b, answer)), WithHTTP1Engine(engine))
			benchCannedGETs(b, addr)
		})
	}
}

// benchCannedGETs measures canned GETs to addr over keep-alive
// connections, one per parallel goroutine.
func benchCannedGETs(b *testing.B, addr string) {
	request := []byte("GET /echo HTTP/1.1\r\nHost: server\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 16<<10)
		for pb.Next() {
			if err := cannedExchange(c, request, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
