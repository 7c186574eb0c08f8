package proxy

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkLibraryFloor is the decision evidence for the proxy's HTTP/1.1
// library: the least a forwarder built on each can cost per request,
// with the same allocation-free client and upstream as
// BenchmarkProxyRequest. Each forwarder does only what every proxy must
// (read the request, send it upstream on a pooled connection, copy the
// answer back); the proxy itself does routing, mTLS, policy and metrics
// on top. Compare BenchmarkProxyRequest with the net/http floor for what
// the proxy's own code costs, and the two floors for what a library
// change could save.
func BenchmarkLibraryFloor(b *testing.B) {
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024))
	b.Run("net-http", func(b *testing.B) {
		upstream := rawUpstream(b, answer)
		transport := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
		b.Cleanup(transport.CloseIdleConnections)
		benchForwarder(b, func(ln net.Listener) func() {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The leanest upstream request net/http takes: the
				// downstream's header map as is, no clone.
				out := (&http.Request{Method: r.Method, URL: &url.URL{Scheme: "http", Host: upstream, Path: r.URL.Path},
					Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: r.Header, Host: r.Host}).WithContext(r.Context())
				resp, err := transport.RoundTrip(out)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				h := w.Header()
				for k, v := range resp.Header {
					h[k] = v
				}
				w.WriteHeader(resp.StatusCode)
				_ = copyBody(w, resp.Body, false) // a pooled buffer (io.Copy's ReadFrom allocates 32 KiB)
			})}
			go srv.Serve(ln)
			return func() { srv.Close() }
		})
	})
	b.Run("fasthttp", func(b *testing.B) {
		client := &fasthttp.HostClient{Addr: rawUpstream(b, answer), MaxConns: 64, ReadTimeout: 5 * time.Second}
		benchForwarder(b, func(ln net.Listener) func() {
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
				if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
					ctx.Error(err.Error(), fasthttp.StatusBadGateway)
				}
			}}
			go srv.Serve(ln)
			return func() { srv.Shutdown() }
		})
	})
}

// benchForwarder serves a forwarder on a loopback listener and measures
// canned GETs through it.
func benchForwarder(b *testing.B, serve func(net.Listener) (stop func())) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(serve(ln))
	benchCannedGETs(b, ln.Addr().String())
}
