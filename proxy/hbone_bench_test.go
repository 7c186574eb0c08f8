package proxy

import (
	"bytes"
	"io"
	"net"
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
			msg := bytes.Repeat([]byte("x"), 1024)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				c.(*net.TCPConn).CloseWrite()
				if got, err := io.ReadAll(c); err != nil || len(got) != len(msg) {
					b.Fatalf("echoed %d bytes (%v), want %d", len(got), err, len(msg))
				}
				c.Close()
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
