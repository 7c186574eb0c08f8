package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshbench/meshbench/proxy/identity"
)

// TestCertificateRotationUnderLoad rotates both proxies' certificates while
// requests flow through a mutual-TLS hop between them, and checks that no
// request fails and that new connections use the new certificates.
func TestCertificateRotationUnderLoad(t *testing.T) {
	up := upstream(t, 200, 0)
	dir := t.TempDir()
	ca, _ := identity.NewCA("td", time.Hour)
	cf, sf := identity.FilesIn(dir, "client"), identity.FilesIn(dir, "server")
	cid, sid := identity.SPIFFEID("td", "ns", "client"), identity.SPIFFEID("td", "ns", "server")
	_ = ca.IssueFiles(cf, cid, time.Hour)
	_ = ca.IssueFiles(sf, sid, time.Hour)
	server, inAddr := startProxy(t, Config{
		Listeners: []Listener{{Name: "in", Direction: Inbound, IdleTimeout: Duration(300 * time.Millisecond),
			TLS:          &TLS{CertFile: sf.Cert, KeyFile: sf.Key, CAFile: sf.CA, AllowedIDs: []string{cid}},
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "app"}}}}}},
		Clusters: []Cluster{{Name: "app", Endpoints: []Endpoint{{Address: hostOf(up.Server)}}}},
	})
	_, outAddr := startProxy(t, Config{
		Listeners: []Listener{{Name: "out", Direction: Outbound,
			VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{{Cluster: "peer"}}}}}},
		Clusters: []Cluster{{Name: "peer", IdleTimeout: Duration(200 * time.Millisecond), Endpoints: []Endpoint{{Address: inAddr}},
			TLS: &TLS{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: cf.CA, AllowedIDs: []string{sid}}}},
	})
	var ok, failed atomic.Int64
	var paused atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if paused.Load() {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				resp, err := http.Get("http://" + outAddr + "/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	serialBefore := peerSerial(t, inAddr, cf)
	connsBefore := server.Stats().Listeners["in"].Connections
	for _, f := range []struct {
		files identity.Files
		id    string
	}{{cf, cid}, {sf, sid}} {
		if err := ca.IssueFiles(f.files, f.id, time.Hour); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Second)
		_ = os.Chtimes(f.files.Cert, later, later)
	}
	time.Sleep(1500 * time.Millisecond) // past the reload check
	// A pause longer than both idle timeouts empties the pools: the load
	// that follows must open new connections, with the new certificates
	// (a busy load alone may keep its connections for good).
	paused.Store(true)
	time.Sleep(time.Second)
	paused.Store(false)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 || ok.Load() < 100 {
		t.Errorf("during rotation: %d requests failed, %d succeeded", f, ok.Load())
	}
	// The load's own new connections after the pause, not counting
	// peerSerial's dials.
	if c := server.Stats().Listeners["in"].Connections; c <= connsBefore {
		t.Errorf("the hop saw no new connection after the rotation (%d before, %d after): rotation was not exercised by new handshakes", connsBefore, c)
	}
	if peerSerial(t, inAddr, cf) == serialBefore {
		t.Error("the server proxy still presents its old certificate after rotation")
	}
}

func peerSerial(t *testing.T, addr string, f identity.Files) string {
	src, err := identity.NewSource(f)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tlsDial(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestHTTP2StreamLimit checks that a listener advertises its bound on
// concurrent streams per connection (the rapid-reset defence) to clients.
func TestHTTP2StreamLimit(t *testing.T) {
	up := upstream(t, 200, 0)
	cfg := clusterOf(nil, up)
	cfg.Listeners[0].MaxConcurrentStreams = 7
	_, addr := startProxy(t, cfg)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok || v != 7 {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (set %v), want 7", v, ok)
			}
			return
		}
	}
}

func tlsDial(addr string, src *identity.Source) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, src.ClientConfig(nil))
}
