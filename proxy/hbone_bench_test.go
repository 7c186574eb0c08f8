package proxy

import (
	"bytes"
	"io"
	"net"
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
