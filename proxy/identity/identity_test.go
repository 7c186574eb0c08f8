package identity

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, PeerID(r.TLS.PeerCertificates[0]))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(cfg *tls.Config, addr string) (string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestMutualTLSWithSPIFFEIDs(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverID, clientID := SPIFFEID("cluster.local", "default", "server"), SPIFFEID("cluster.local", "default", "client")
	sf, cf := FilesIn(dir, "server"), FilesIn(dir, "client")
	if err := ca.IssueFiles(sf, serverID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueFiles(cf, clientID, time.Hour); err != nil {
		t.Fatal(err)
	}
	ss, _ := NewSource(sf)
	cs, _ := NewSource(cf)
	if ss.ID() != serverID {
		t.Errorf("server ID %q", ss.ID())
	}
	addr := serveTLS(t, ss.ServerConfig(AllowIDs(clientID)))

	// The client sees the server's identity and the server the client's.
	got, err := get(cs.ClientConfig(AllowIDs(serverID)), addr)
	if err != nil || got != clientID {
		t.Fatalf("mTLS request: %q, %v", got, err)
	}
	// The client refuses a server with an unexpected identity.
	if _, err := get(cs.ClientConfig(AllowIDs(clientID)), addr); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("client accepted an unexpected server identity: %v", err)
	}
	// A plaintext client gets nothing.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(conn)
	conn.Close()
	if strings.Contains(string(b), "200 OK") {
		t.Error("plaintext request was served")
	}
	// A client without a certificate, and one from another CA, are rejected.
	if _, err := get(&tls.Config{InsecureSkipVerify: true}, addr); err == nil {
		t.Error("client without a certificate was served")
	}
	other, _ := NewCA("cluster.local", time.Hour)
	of := FilesIn(t.TempDir(), "client")
	_ = other.IssueFiles(of, clientID, time.Hour)
	otherSrc, _ := NewSource(of)
	if _, err := get(otherSrc.ClientConfig(nil), addr); err == nil {
		t.Error("client with a certificate from another CA was served")
	}
}

func TestRotationWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("td", time.Hour)
	sf, cf := FilesIn(dir, "server"), FilesIn(dir, "client")
	id := SPIFFEID("td", "ns", "server")
	_ = ca.IssueFiles(sf, id, time.Hour)
	_ = ca.IssueFiles(cf, SPIFFEID("td", "ns", "client"), time.Hour)
	ss, _ := NewSource(sf)
	cs, _ := NewSource(cf)
	addr := serveTLS(t, ss.ServerConfig(nil))
	serialOf := func() string {
		conn, err := tls.Dial("tcp", addr, cs.ClientConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	// An established connection survives the rotation.
	held, err := tls.Dial("tcp", addr, cs.ClientConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before := serialOf()
	time.Sleep(10 * time.Millisecond)
	if err := ca.IssueFiles(sf, id, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Make the change visible even on file systems with coarse mtimes.
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(sf.Cert, later, later)
	time.Sleep(reloadCheck + 100*time.Millisecond)
	if after := serialOf(); after == before {
		t.Error("new connections still get the old certificate after rotation")
	}
	if _, err := io.WriteString(held, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Errorf("established connection broken by rotation: %v", err)
	}
	held.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 12)
	if _, err := io.ReadFull(held, buf); err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		t.Errorf("established connection after rotation: %q %v", buf, err)
	}
}
