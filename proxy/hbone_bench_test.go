package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkHBONE measures the L4 node proxies' data path (a connection
// carried as an HTTP/2 CONNECT stream over the pooled mutual-TLS
// connection between two proxies) beside the same echo application
// dialled directly, in one run: compare the two as a ratio. "stream" is a
// tunnelled connection's whole life (dial, 1 KiB each way, half-close,
// close); "bytes" echoes 32 KiB chunks over one long-lived connection.
func BenchmarkHBONE(b *testing.B) {
	tunnel, _, _, _ := tunnelPairWith(b, "client", tunnelOptions{})
	direct := serveTCP(b, echoHalfClose)
	for _, target := range []struct{ name, addr string }{{"direct", direct}, {"tunnel", tunnel}} {
		b.Run("stream/"+target.name, func(b *testing.B) {
			msg := strings.Repeat("x", 1024)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if got := roundTrip(b, target.addr, msg); len(got) != len(msg) {
					b.Fatalf("echoed %d bytes, want %d", len(got), len(msg))
				}
			}
		})
		b.Run("bytes/"+target.name, func(b *testing.B) {
			c, err := net.Dial("tcp", target.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk, back := bytes.Repeat([]byte("y"), 32<<10), make([]byte, 32<<10)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWaypoint measures a request's way through a waypoint (the
// caller's L4 proxy tunnelling to it, its internal L7 listener, and its
// tunnel on to the destination node, which hands the request to the
// application) beside the same application's requests sent directly, in
// one run, over keep-alive connections: compare the two as a ratio.
func BenchmarkWaypoint(b *testing.B) {
	ch := waypointChain(b)
	for _, target := range []struct{ name, addr string }{{"direct", ch.app}, {"waypoint", ch.caller(b, "client")}} {
		b.Run(target.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", target.addr)
			}}}
			defer c.CloseIdleConnections()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get("http://svc:80/allowed")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
