package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// silentRelay forwards TCP connections to an upstream until frozen; then
// it forwards nothing either way (a partition that drops), and reports
// when the proxy gives up on a frozen connection and closes it.
type silentRelay struct {
	ln     net.Listener
	frozen atomic.Bool
	gaveUp chan struct{}
}

func newSilentRelay(t *testing.T, upstream string) *silentRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &silentRelay{ln: ln, gaveUp: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go r.pipe(up, c, false)
			go r.pipe(c, up, true)
		}
	}()
	return r
}

// pipe copies from src to dst while not frozen; fromProxy reports the
// proxy closing a frozen connection.
func (r *silentRelay) pipe(dst, src net.Conn, fromProxy bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if fromProxy && r.frozen.Load() {
				r.gaveUp <- struct{}{}
			}
			return
		}
		if r.frozen.Load() {
			continue // dropped
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestHTTP2KeepaliveNoticesSilentPeer: an HTTP/2 cluster with Envoy's
// connection_keepalive (200 ms, 200 ms) notices a peer that went silent
// with a request in flight: it closes the connection and answers the
// request with an error instead of holding it to the route's timeout.
// (Without it, the default 15 s + 5 s would pass this test's 10 s.)
func TestHTTP2KeepaliveNoticesSilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), Protocols: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	relay := newSilentRelay(t, ln.Addr().String())
	cfg := oneRoute(relay.ln.Addr().String())
	cfg.Clusters[0].HTTP2 = true
	cfg.Clusters[0].HTTP2Keepalive = &Keepalive{Interval: Duration(200 * time.Millisecond), Timeout: Duration(200 * time.Millisecond)}
	_, addr := startProxy(t, cfg)
	get := func() (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before the silence: %v, %v", resp, err)
	}
	relay.frozen.Store(true)
	resp, err := get()
	if err != nil {
		t.Fatalf("a request to the silent peer was held past 10 s: %v", err)
	}
	if resp.StatusCode < 500 {
		t.Errorf("a request to the silent peer answered %d, want an error status", resp.StatusCode)
	}
	select {
	case <-relay.gaveUp:
	case <-time.After(10 * time.Second):
		t.Errorf("the proxy kept the silent connection open for 10 s")
	}
}
