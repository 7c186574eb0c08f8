package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// TestHTTP2TunnelBetweenProxies sends concurrent HTTP/1.1 requests through
// a client proxy that multiplexes them as HTTP/2 streams over one mutual-TLS
// connection to a server proxy, as the per-node mode does, and checks the
// source-identity header rewriting on the way.
func TestHTTP2TunnelBetweenProxies(t *testing.T) {
	type seen struct{ proto, source, spoof string }
	var mu sync.Mutex
	var got []seen
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Proto, r.Header.Get("X-Meshbench-Source"), r.Header.Get("X-Spoof")})
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // keep streams concurrent
		io.WriteString(w, "ok")
	}))
	defer up.Close()

	a, b, idA, idB := nodeIdentities(t)

	server, tunnelAddr := startProxy(t, Config{
		Listeners: []Listener{{Name: "tunnel", Direction: Inbound, Codec: CodecHTTP2,
			TLS:          &TLS{CertFile: b.Cert, KeyFile: b.Key, CAFile: b.CA, AllowedIDs: []string{idA}},
			VirtualHosts: []VirtualHost{{Name: "in", Domains: []string{"*"}, Routes: []Route{{Cluster: "app"}}}},
		}},
		Clusters: []Cluster{{Name: "app", Endpoints: []Endpoint{{Address: hostOf(up)}}}},
	})
	_, outAddr := startProxy(t, Config{
		Listeners: []Listener{{Name: "out", Direction: Outbound,
			VirtualHosts: []VirtualHost{{Name: "server", Domains: []string{"*"}, Routes: []Route{{Cluster: "tunnel"}},
				RequestHeadersToRemove: []string{"X-Spoof"},
				RequestHeadersToAdd:    []Header{{Name: "X-Meshbench-Source", Value: "spiffe://td/ns/default/sa/client"}},
			}},
		}},
		Clusters: []Cluster{{Name: "tunnel", HTTP2: true, Endpoints: []Endpoint{{Address: tunnelAddr}},
			TLS: &TLS{CertFile: a.Cert, KeyFile: a.Key, CAFile: a.CA, AllowedIDs: []string{idB}}}},
	})

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+outAddr+"/", nil)
			req.Header.Set("X-Spoof", "spiffe://td/ns/default/sa/admin")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok" {
				errs <- &httpError{resp.StatusCode}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != n {
		t.Fatalf("upstream saw %d requests, want %d", len(got), n)
	}
	for _, s := range got {
		if s.source != "spiffe://td/ns/default/sa/client" || s.spoof != "" {
			t.Errorf("upstream saw source %q and spoofed header %q", s.source, s.spoof)
			break
		}
	}
	if c := server.Stats().Listeners["tunnel"].Connections; c != 1 {
		t.Errorf("tunnel listener accepted %d connections for %d concurrent requests, want 1 multiplexed", c, n)
	}
}

type httpError struct{ code int }

func (e *httpError) Error() string { return http.StatusText(e.code) }

// TestH2CDownstream checks that a cleartext listener accepts HTTP/2 with
// prior knowledge (h2c) as well as HTTP/1.1.
func TestH2CDownstream(t *testing.T) {
	var proto string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	_, addr := startProxy(t, oneRoute(hostOf(up)))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	proto = resp.Proto
	resp.Body.Close()
	if resp.StatusCode != 200 || proto != "HTTP/2.0" {
		t.Errorf("h2c request: %d %s", resp.StatusCode, proto)
	}
}

// TestPerNodePolicyBySourceIdentity: the destination node proxy admits only
// node proxies (mTLS), and applies RBAC to the source workload's identity
// that the sending node proxy stamps, so that policy stays per workload.
func TestPerNodePolicyBySourceIdentity(t *testing.T) {
	up := upstream(t, 200, 0)
	a, b, idA, idB := nodeIdentities(t)
	allowed, denied := "spiffe://td/ns/default/sa/frontend", "spiffe://td/ns/default/sa/batch"
	server, tunnelAddr := startProxy(t, Config{
		Listeners: []Listener{{Name: "tunnel", Direction: Inbound, Codec: CodecHTTP2,
			TLS:          &TLS{CertFile: b.Cert, KeyFile: b.Key, CAFile: b.CA, AllowedIDs: []string{idA}},
			RBAC:         &RBAC{Policies: []Policy{{Name: "frontend", Principals: []string{allowed}, SourceHeader: "X-Meshbench-Source"}}},
			VirtualHosts: []VirtualHost{{Name: "in", Domains: []string{"*"}, Routes: []Route{{Cluster: "app"}}}},
		}},
		Clusters: []Cluster{{Name: "app", Endpoints: []Endpoint{{Address: hostOf(up.Server)}}}},
	})
	// One node proxy, two workloads on it (one outbound listener each, as
	// the node proxy tells its workloads apart).
	vh := func(id string) []VirtualHost {
		return []VirtualHost{{Name: "server", Domains: []string{"*"}, Routes: []Route{{Cluster: "tunnel"}},
			RequestHeadersToRemove: []string{"X-Meshbench-Source"},
			RequestHeadersToAdd:    []Header{{Name: "X-Meshbench-Source", Value: id}}}}
	}
	node, _ := startProxy(t, Config{
		Listeners: []Listener{
			{Name: "frontend", Direction: Outbound, VirtualHosts: vh(allowed)},
			{Name: "batch", Direction: Outbound, Address: "127.0.0.1:0", VirtualHosts: vh(denied)},
		},
		Clusters: []Cluster{{Name: "tunnel", HTTP2: true, Endpoints: []Endpoint{{Address: tunnelAddr}},
			TLS: &TLS{CertFile: a.Cert, KeyFile: a.Key, CAFile: a.CA, AllowedIDs: []string{idB}}}},
	})
	// The batch workload also tries to claim the frontend's identity.
	if code, _ := do(t, "GET", "http://"+node.Addr("frontend")+"/", nil); code != 200 {
		t.Errorf("frontend through the node proxies: %d, want 200", code)
	}
	if code, _ := do(t, "GET", "http://"+node.Addr("batch")+"/", map[string]string{"X-Meshbench-Source": allowed}); code != 403 {
		t.Errorf("batch (spoofing the frontend's identity): %d, want 403", code)
	}
	// Naming the stamped header in Connection must not strip it (it would
	// leave the node proxy's own identity to be judged).
	if code, _ := do(t, "GET", "http://"+node.Addr("batch")+"/", map[string]string{"Connection": "X-Meshbench-Source"}); code != 403 {
		t.Errorf("batch stripping its stamped identity: %d, want 403", code)
	}
	if code, _ := do(t, "GET", "http://"+node.Addr("frontend")+"/", map[string]string{"Connection": "X-Meshbench-Source"}); code != 200 {
		t.Errorf("frontend with Connection naming the source header: %d, want 200", code)
	}
	if d := server.Stats().Listeners["tunnel"].Denied; d != 2 || up.n.Load() != 2 {
		t.Errorf("denied %d, upstream saw %d; want 2 and 2", d, up.n.Load())
	}
}

// nodeIdentities issues two node proxies' identities from one CA.
func nodeIdentities(t *testing.T) (a, b identity.Files, idA, idB string) {
	dir := t.TempDir()
	ca, err := identity.NewCA("td", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, b = identity.FilesIn(dir, "node-a"), identity.FilesIn(dir, "node-b")
	idA, idB = identity.SPIFFEID("td", "meshbench-system", "node-a"), identity.SPIFFEID("td", "meshbench-system", "node-b")
	if err := errors.Join(ca.IssueFiles(a, idA, time.Hour), ca.IssueFiles(b, idB, time.Hour)); err != nil {
		t.Fatal(err)
	}
	return a, b, idA, idB
}
