package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// named is an upstream that answers with its name.
func named(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return hostOf(s)
}

// TestUpdatesUnderLoad replaces the configuration 100 times while four
// clients send requests without pause: endpoints change, clusters are
// replaced (new settings) and renamed, routes are added and removed, and a
// second listener comes and goes. No request may fail.
func TestUpdatesUnderLoad(t *testing.T) {
	a, b := named(t, "a"), named(t, "b")
	cfgAt := func(i int) Config {
		eps := [][]Endpoint{{{Address: a}}, {{Address: a}, {Address: b}}, {{Address: b}}}[i%3]
		lb := []LBPolicy{LBRoundRobin, LBLeastRequest}[i/3%2]
		name := []string{"c", "c2"}[i/6%2]
		routes := []Route{{Cluster: name}}
		if i%4 == 1 {
			routes = append([]Route{{PathPrefix: "/only-b", Cluster: "b"}}, routes...)
		}
		cfg := Config{
			Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", Direction: Outbound,
				VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: routes}}}},
			Clusters: []Cluster{
				{Name: name, LBPolicy: lb, Endpoints: eps},
				{Name: "b", Endpoints: []Endpoint{{Address: b}}},
			},
		}
		if i%5 == 2 {
			cfg.Listeners = append(cfg.Listeners, Listener{Name: "extra", Address: "127.0.0.1:0", Direction: Outbound,
				VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "b"}}}}})
		}
		return cfg
	}
	p, err := New(cfgAt(0), WithVersion("v0"))
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	defer stop()
	addr := p.Addr("l")

	var ok, failed atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	var firstErr atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				path := "/"
				if w == 0 {
					path = "/only-b/x"
				}
				resp, err := client.Get("http://" + addr + path)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Meshbench-Proxy-Error")))
					continue
				}
				ok.Add(1)
				mu.Lock()
				seen[string(body)]++
				mu.Unlock()
			}
		}()
	}
	extraSeen := 0
	for i := 1; i <= 100; i++ {
		before := ok.Load()
		if err := p.Update(cfgAt(i), fmt.Sprintf("v%d", i), nil); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if extra := p.Addr("extra"); extra != "" {
			extraSeen++
			resp, err := http.Get("http://" + extra + "/")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("update %d: the added listener at %s: %v %v", i, extra, err, resp)
			} else {
				resp.Body.Close()
			}
		}
		// Some requests under each configuration.
		for deadline := time.Now().Add(10 * time.Second); ok.Load() < before+20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	close(done)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed across 100 updates; first: %v", f, f+ok.Load(), firstErr.Load())
	}
	if seen["a"] == 0 || seen["b"] == 0 || ok.Load() < 2000 {
		t.Errorf("answers %v (%d in all), want both upstreams and at least 2000", seen, ok.Load())
	}
	if extraSeen != 20 {
		t.Errorf("the extra listener was bound after %d updates, want 20", extraSeen)
	}
	if v := p.Version(); v != "v100" {
		t.Errorf("version in force %q, want v100", v)
	}
	t.Logf("%d requests across 100 updates, answers %v", ok.Load(), seen)
}

// TestUpdateRebindsAndRemovesListeners: a listener whose serving settings
// change keeps its address and serves on; a removed listener stops
// accepting; the configuration in force is in /config_dump.
func TestUpdateRebindsAndRemovesListeners(t *testing.T) {
	a := named(t, "a")
	base := func(codec Codec, withExtra bool) Config {
		cfg := oneRoute(a)
		cfg.Admin = "127.0.0.1:0"
		cfg.Listeners[0].Address = "127.0.0.1:0"
		cfg.Listeners[0].Codec = codec
		if withExtra {
			cfg.Listeners = append(cfg.Listeners, Listener{Name: "extra", Address: "127.0.0.1:0", Direction: Outbound,
				VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "c"}}}}})
		}
		return cfg
	}
	p, err := New(base(CodecAuto, true), WithVersion("1"))
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	defer stop()
	addr, extra := p.Addr("l"), p.Addr("extra")
	get := func(a string) error {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + a + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "a" {
			return fmt.Errorf("%d %q", resp.StatusCode, b)
		}
		return nil
	}
	if err := get(extra); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(base(CodecHTTP1, false), "2", json.RawMessage(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if got := p.Addr("l"); got != addr {
		t.Errorf("rebound listener moved from %s to %s", addr, got)
	}
	if err := get(addr); err != nil {
		t.Errorf("after the rebind: %v", err)
	}
	// The removed listener drains, then refuses.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", extra, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the removed listener %s still accepts", extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + p.Addr(AdminListener) + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	dump, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(dump), `"version": "2"`) || !strings.Contains(string(dump), `"v": 2`) {
		t.Errorf("config_dump does not show version 2 and its source:\n%.400s", dump)
	}
}

// TestUpdateThatFailsChangesNothing: a listener that cannot bind, or a
// configuration that does not validate, is an error, and the proxy keeps
// serving what it had.
func TestUpdateThatFailsChangesNothing(t *testing.T) {
	a := named(t, "a")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := oneRoute(a)
	cfg.Listeners[0].Address = "127.0.0.1:0"
	p, err := New(cfg, WithVersion("good"))
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(t, p)
	defer stop()
	bad := oneRoute(a)
	bad.Listeners[0].Address = "127.0.0.1:0"
	bad.Listeners = append(bad.Listeners, Listener{Name: "clash", Address: taken.Addr().String(), Direction: Outbound,
		VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "c"}}}}})
	if err := p.Update(bad, "clash", nil); err == nil || !strings.Contains(err.Error(), "clash") {
		t.Errorf("update with a taken address: %v, want an error naming the listener", err)
	}
	dangling := oneRoute(a)
	dangling.Listeners[0].VirtualHosts[0].Routes[0].Cluster = "missing"
	if err := p.Update(dangling, "dangling", nil); err == nil {
		t.Error("update routing to a missing cluster: no error")
	}
	if v := p.Version(); v != "good" {
		t.Errorf("version %q after failed updates, want good", v)
	}
	if resp, err := http.Get("http://" + p.Addr("l") + "/"); err != nil || resp.StatusCode != 200 {
		t.Errorf("after failed updates: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

// TestAwaitConfig: a proxy that waits for its configuration is not ready
// until the first update, then serves it.
func TestAwaitConfig(t *testing.T) {
	a := named(t, "a")
	p, err := New(Config{Node: "n", Admin: "127.0.0.1:0"}, AwaitConfig())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	ctx, cancel := contextWithCancel()
	go func() { errc <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	for p.Addr(AdminListener) == "" {
		select {
		case err := <-errc:
			errc <- err // for the deferred check
			t.Fatalf("Run ended before binding: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if p.Ready() {
		t.Fatal("ready before any configuration")
	}
	cfg := oneRoute(a)
	cfg.Listeners[0].Address = "127.0.0.1:0"
	if err := p.Update(cfg, "1", nil); err != nil {
		t.Fatal(err)
	}
	if !p.Ready() {
		t.Fatal("not ready after the first configuration")
	}
	if resp, err := http.Get("http://" + p.Addr("l") + "/"); err != nil || resp.StatusCode != 200 {
		t.Errorf("first configuration: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

// TestServerKeyIsByValue: an update whose listener is the same keeps its
// server (TLS settings compared by value, not by pointer); one whose TLS
// settings change gets a new one.
func TestServerKeyIsByValue(t *testing.T) {
	tlsOf := func(cert string) *TLS {
		return &TLS{CertFile: cert, KeyFile: "k", CAFile: "ca", AllowedIDs: []string{"spiffe://td/ns/a"}}
	}
	l := func(t *TLS) *listener {
		return &listener{cfg: Listener{Name: "in", Address: "127.0.0.1:1", Direction: Inbound, TLS: t}}
	}
	a, b, c := serverKey(l(tlsOf("c")), nil), serverKey(l(tlsOf("c")), nil), serverKey(l(tlsOf("other")), nil)
	if a != b {
		t.Errorf("the same listener has two server keys:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("listeners with different certificates share a server key: %s", a)
	}
}

// TestRunThatFailsReleasesItsSockets: a Run that cannot bind its admin
// address leaves nothing bound: the next Run binds the same addresses.
func TestRunThatFailsReleasesItsSockets(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := oneRoute("127.0.0.1:9")
	cfg.Listeners[0].Address = free()
	cfg.Admin = taken.Addr().String()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "admin listener") {
		t.Fatalf("Run with its admin address taken: %v", err)
	}
	taken.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); p.Addr("l") == ""; time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("second Run: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("second Run did not bind")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
