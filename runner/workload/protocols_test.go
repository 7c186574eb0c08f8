package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fortio.org/fortio/fhttp"
)

// load runs a short load at 200 rps over 2 connections against addr.
func load(t *testing.T, protocol, addr, host string) *Result {
	t.Helper()
	res, err := RunLoad(context.Background(), LoadOptions{
		URL: "http://" + addr + "/", Host: host, QPS: 200, Connections: 2, Duration: time.Second,
		RequestSize: 100, Protocol: protocol, Log: io.Discard,
	}, io.Discard)
	if err != nil {
		t.Fatalf("%s load: %v", protocol, err)
	}
	return res
}

// served reads a stopped server's final counts from its stats stream.
func served(t *testing.T, stats *bytes.Buffer) ServedEvent {
	t.Helper()
	var last ServedEvent
	for _, line := range strings.Split(strings.TrimSpace(stats.String()), "\n") {
		var ev ServedEvent
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == EventServed {
			last = ev
		}
	}
	if last.Event == "" {
		t.Fatalf("no served event in %q", stats.String())
	}
	return last
}

// TestGRPCLoadThroughACallChain drives fortio's ping load at a gRPC front
// service that pings a back service through a dial address other than
// its authority (as through a proxy): every ping succeeds and reaches
// both; with the back service gone, every ping fails UNAVAILABLE.
func TestGRPCLoadThroughACallChain(t *testing.T) {
	var backStats, frontStats bytes.Buffer
	back, stopBack := serve(t, ServerOptions{Protocol: "grpc", PayloadSize: 10, Stats: &backStats})
	front, stopFront := serve(t, ServerOptions{Protocol: "grpc", PayloadSize: 64, Stats: &frontStats,
		Calls: []Call{{Authority: "back:8080", Dial: back}}})

	res := load(t, "grpc", front, "front:8080")
	g, ok := res.Fortio.(*GRPCResult)
	if !ok {
		t.Fatalf("result is %T, want *GRPCResult", res.Fortio)
	}
	n := g.DurationHistogram.Count
	if n < 100 || g.RetCodes["OK"] != n || len(g.RetCodes) != 1 {
		t.Fatalf("want ~200 pings all OK, got %d: %v", n, g.RetCodes)
	}
	if res.Latency.Count != n || res.CO.Count != n {
		t.Errorf("meshbench's histograms counted %d and %d pings, fortio %d", res.Latency.Count, res.CO.Count, n)
	}

	stopBack()
	failed := load(t, "grpc", front, "front:8080").Fortio.(*GRPCResult)
	if failed.RetCodes["Unavailable"] != failed.DurationHistogram.Count || failed.DurationHistogram.Count == 0 {
		t.Errorf("with the back service gone, want every ping Unavailable, got %v", failed.RetCodes)
	}
	stopFront()
	f, b := served(t, &frontStats), served(t, &backStats)
	// Each load's connections ping once before the clock starts.
	if f.Requests < n || b.Requests != f.Calls-f.CallErrors || f.CallErrors < failed.DurationHistogram.Count {
		t.Errorf("front served %+v, back %+v; the first load sent %d", f, b, n)
	}
}

// TestTCPEchoLoad drives fortio's TCP echo load: every payload comes back
// intact over the long-lived connections (fortio checks the bytes), and
// the server counts exactly the payloads it echoed.
func TestTCPEchoLoad(t *testing.T) {
	var stats bytes.Buffer
	addr, stop := serve(t, ServerOptions{Protocol: "tcp", Stats: &stats, EchoSize: TCPPayloadSize(100)})
	res := load(t, "tcp", addr, "")
	tr, ok := res.Fortio.(*TCPResult)
	if !ok {
		t.Fatalf("result is %T, want *TCPResult", res.Fortio)
	}
	n := tr.DurationHistogram.Count
	if n < 100 || tr.RetCodes["OK"] != n || len(tr.RetCodes) != 1 {
		t.Fatalf("want ~200 echoes all OK, got %d: %v", n, tr.RetCodes)
	}
	if tr.SocketCount != 2 {
		t.Errorf("want the 2 connections kept for the whole run, fortio opened %d", tr.SocketCount)
	}
	stop()
	// fortio's runner echoes once per connection before the clock starts.
	if s := served(t, &stats); s.Requests != n+2 {
		t.Errorf("the echo server counted %d payloads for %d echoes and 2 first ones", s.Requests, n)
	}
	if err := Serve(context.Background(), ServerOptions{Protocol: "tcp", Listen: "127.0.0.1:0", Calls: []Call{{Authority: "x:1"}}}); err == nil {
		t.Error("a TCP echo server with calls started")
	}
}

// TestHTTP2Load drives fortio's HTTP/2 load (cleartext, prior knowledge)
// at an http2 server that calls another over HTTP/2: every request of
// both hops is HTTP/2.
func TestHTTP2Load(t *testing.T) {
	var h1 atomic.Int64
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor != 2 {
				h1.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}
	back, _ := serve(t, ServerOptions{Protocol: "http2", PayloadSize: 10, Guard: count})
	front, _ := serve(t, ServerOptions{Protocol: "http2", PayloadSize: 10, Guard: count,
		Calls: []Call{{Authority: "back:8080", Dial: back}}})
	res := load(t, "http2", front, "")
	hr, ok := res.Fortio.(*fhttp.HTTPRunnerResults)
	if !ok {
		t.Fatalf("result is %T", res.Fortio)
	}
	if n := hr.DurationHistogram.Count; n < 100 || hr.RetCodes[200] != n {
		t.Fatalf("want ~200 requests all 200, got %d: %v", n, hr.RetCodes)
	}
	if h1.Load() != 0 {
		t.Errorf("%d requests were not HTTP/2", h1.Load())
	}
}

// TestStopWithAnUnusedConnection: a server that a client holds a
// connection to that never carried a request (a keep-alive pool's spare)
// still stops, and reports its counts, within the 5 s the runner gives a
// process before it kills it: net/http's Shutdown alone waits 5 s for such
// a connection.
func TestStopWithAnUnusedConnection(t *testing.T) {
	var stats bytes.Buffer
	addr, stop := serve(t, ServerOptions{Stats: &stats})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(4500 * time.Millisecond):
		t.Fatal("the server was still draining after 4.5 s; the runner kills it at 5 s and its counts are lost")
	}
	served(t, &stats)
}
