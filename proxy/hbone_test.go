package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// echoHalfClose echoes what it reads and closes its write side when its
// peer does, so a tunnel's half-closes can be seen end to end.
func echoHalfClose(c net.Conn) {
	_, _ = io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// tunnelPair runs a node proxy ending HBONE streams to app for callers
// with id, and an outbound proxy whose TCP listeners tunnel to it with
// sender's identity: "out" to app's authority, "secret" to one only other
// may reach.
func tunnelPair(t *testing.T, sender string) (out, secret string, from, end *Proxy) {
	return tunnelPairWith(t, sender, tunnelOptions{})
}

// tunnelOptions change tunnelPair's proxies and application.
type tunnelOptions struct {
	// handle serves the application's connections (default: echo).
	handle func(net.Conn)
	// outIdle and nodeIdle are the sending and receiving listeners' idle
	// timeouts (0: the default).
	outIdle, nodeIdle Duration
	// endKeepalive is the receiving listener's HTTP/2 keepalive.
	endKeepalive *Keepalive
	// via, when set, is what the sender dials instead of the receiving
	// listener's address (a relay to it).
	via func(addr string) string
}

// tunnelPairWith is tunnelPair with o. The sender's cluster ejects its
// one endpoint at the first failure.
func tunnelPairWith(t testing.TB, sender string, o tunnelOptions) (out, secret string, from, end *Proxy) {
	if o.handle == nil {
		o.handle = echoHalfClose
	}
	dir := t.TempDir()
	ca, err := identity.NewCA("td", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, id string) *TLS {
		f := identity.FilesIn(dir, name)
		if err := ca.IssueFiles(f, id, time.Hour); err != nil {
			t.Fatal(err)
		}
		return &TLS{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA}
	}
	nodeID := identity.SPIFFEID("td", "ns", "node-b")
	clientID, otherID := identity.SPIFFEID("td", "ns", "client"), identity.SPIFFEID("td", "ns", "other")
	app := serveTCP(t, o.handle)
	end, hbone := startProxy(t, Config{
		Listeners: []Listener{{Name: "hbone", Direction: Inbound, Codec: CodecHTTP2, TLS: issue("node-b", nodeID), IdleTimeout: o.nodeIdle, HTTP2Keepalive: o.endKeepalive,
			RBAC: &RBAC{Policies: []Policy{
				{Name: "app", Principals: []string{clientID}, Hosts: []string{"app:7"}},
				{Name: "secret", Principals: []string{otherID}, Hosts: []string{"secret:9"}},
			}},
			VirtualHosts: []VirtualHost{
				{Name: "app", Domains: []string{"app:7"}, Routes: []Route{{Connect: true, Cluster: "app"}}},
				{Name: "secret", Domains: []string{"secret:9"}, Routes: []Route{{Connect: true, Cluster: "app"}}},
			}}},
		Clusters: []Cluster{{Name: "app", Endpoints: []Endpoint{{Address: app}}}},
	})
	if o.via != nil {
		hbone = o.via(hbone)
	}
	tls := issue(sender, identity.SPIFFEID("td", "ns", sender))
	tls.AllowedIDs = []string{nodeID}
	p, out := startProxy(t, Config{
		Listeners: []Listener{
			{Name: "out", Direction: Outbound, TCPCluster: "node-b", TCPTunnel: "app:7", IdleTimeout: o.outIdle},
			{Name: "secret", Direction: Outbound, Address: "127.0.0.1:0", TCPCluster: "node-b", TCPTunnel: "secret:9"},
		},
		Clusters: []Cluster{{Name: "node-b", HTTP2: true, TLS: tls, Endpoints: []Endpoint{{Address: hbone}},
			Outlier: &Outlier{Consecutive5xx: 1, ConsecutiveGatewayFailure: 1, BaseEjectionTime: Duration(time.Minute), MaxEjectionPercent: 100}}},
	})
	return out, p.Addr("secret"), p, end
}

// roundTrip sends msg over a connection to addr, half-closes, and returns
// everything read until the far end closes. A refused tunnel closes the
// connection with msg unread: a reset, which reads as nothing echoed.
func roundTrip(t testing.TB, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read through the tunnel: %v", err)
	}
	return string(got)
}

func TestHBONETunnel(t *testing.T) {
	out, secret, _, end := tunnelPair(t, "client")
	// Many connections at once: each is a stream of the one pooled
	// connection between the proxies.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := strings.Repeat(string(rune('a'+i)), 100000+i)
			if got := roundTrip(t, out, msg); got != msg {
				t.Errorf("connection %d: echoed %d bytes, want %d", i, len(got), len(msg))
			}
		}()
	}
	wg.Wait()
	st := end.Stats().Listeners["hbone"]
	if st.Connections != 1 || st.Requests != 20 || st.Responses2xx != 20 {
		t.Errorf("tunnel end: %d connections, %d streams, %d answered 200; want 1, 20, 20", st.Connections, st.Requests, st.Responses2xx)
	}
	// The client may not reach the secret destination: its stream is
	// refused and its connection closed with nothing echoed.
	if got := roundTrip(t, secret, "hello"); got != "" {
		t.Errorf("denied destination echoed %q", got)
	}
	if d := end.Stats().Listeners["hbone"].Denied; d != 1 {
		t.Errorf("denied %d streams, want 1", d)
	}
}

func TestHBONEOtherIdentity(t *testing.T) {
	out, secret, from, end := tunnelPair(t, "other")
	if got := roundTrip(t, out, "hello"); got != "" {
		t.Errorf("other reached app: echoed %q", got)
	}
	// A refusal (403) is the peer node answering, as a 4xx is for a
	// request: not a failure of the node, which would be ejected for
	// every stream of the cluster.
	if e := from.Stats().Clusters["node-b"].Ejections; e != 0 {
		t.Errorf("a refused stream ejected the peer node (%d ejections)", e)
	}
	if got := roundTrip(t, secret, "hello"); got != "hello" {
		t.Errorf("other's own destination echoed %q, want hello", got)
	}
	if st := end.Stats().Listeners["hbone"]; st.Denied != 1 || st.Responses2xx != 1 {
		t.Errorf("tunnel end: denied %d, answered 200 %d; want 1 and 1", st.Denied, st.Responses2xx)
	}
}

// TestHBONEEnds checks that a tunnelled connection ends at both proxies,
// and the application's connection with it, when it goes idle after the
// client half-closed (the sending or the receiving proxy's idle timeout)
// and when the client resets it. Each case waits up to 20 s for what a
// 300 ms timeout or a reset causes at once.
func TestHBONEEnds(t *testing.T) {
	for _, tc := range []struct {
		name              string
		outIdle, nodeIdle Duration
		reset             bool
	}{
		{name: "idle at the sender", outIdle: Duration(300 * time.Millisecond)},
		{name: "idle at the receiver", nodeIdle: Duration(300 * time.Millisecond)},
		{name: "client reset", reset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The application reads to the end and then says nothing,
			// holding its connection until the test ends.
			hold := make(chan struct{})
			t.Cleanup(func() { close(hold) })
			read := make(chan struct{}, 1)
			silent := func(c net.Conn) {
				_, _ = io.Copy(io.Discard, c)
				read <- struct{}{}
				<-hold
			}
			out, _, _, end := tunnelPairWith(t, "client", tunnelOptions{handle: silent, outIdle: tc.outIdle, nodeIdle: tc.nodeIdle})
			c, err := net.DialTimeout("tcp", out, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "hello"); err != nil {
				t.Fatal(err)
			}
			if tc.reset {
				// Wait for the stream to be in service, then reset.
				waitFor(t, "the stream to start", func() bool { return end.Stats().Listeners["hbone"].InFlight == 1 })
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				select {
				case <-read: // the application's connection ended
				case <-time.After(20 * time.Second):
					t.Fatal("the application's connection outlived the client's reset")
				}
			} else {
				c.(*net.TCPConn).CloseWrite()
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				_, err := io.ReadAll(c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the tunnelled connection outlived its idle timeout")
				}
			}
			waitFor(t, "the tunnel's end to finish the stream", func() bool { return end.Stats().Listeners["hbone"].InFlight == 0 })
		})
	}
}

// TestHBONEEndPingsASilentSender: a sender gone silent (a partition: its
// packets stop, its connection stays open) is found by the receiving
// end's HTTP/2 keepalive, which closes the connection and so ends its
// streams and the application's connections they carry. Without it they
// would last until the listener's idle timeout (60 s).
func TestHBONEEndPingsASilentSender(t *testing.T) {
	ended := make(chan struct{}, 1)
	app := func(c net.Conn) {
		_, _ = io.Copy(c, c) // echo until the proxy closes it
		ended <- struct{}{}
	}
	var relay *silentRelay
	out, _, _, end := tunnelPairWith(t, "client", tunnelOptions{handle: app,
		endKeepalive: &Keepalive{Interval: Duration(200 * time.Millisecond), Timeout: Duration(200 * time.Millisecond)},
		via:          func(addr string) string { relay = newSilentRelay(t, addr); return relay.ln.Addr().String() }})
	c, err := net.DialTimeout("tcp", out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Reset at the end: the sender ends its stream at once rather than
	// wait, as for a half-close, for its silent peer (its own keepalive,
	// 20 s by default).
	defer func() { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }()
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("no echo through the tunnel: %q, %v", got, err)
	}
	relay.frozen.Store(true)
	frozen := time.Now()
	select {
	case <-ended:
		t.Logf("the application's connection ended %v after the freeze", time.Since(frozen).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the application's connection outlived its silent sender by 20 s")
	}
	waitFor(t, "the tunnel's end to finish the stream", func() bool { return end.Stats().Listeners["hbone"].InFlight == 0 })
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestConnectRouteRefusesRequestFeatures: a connect route carries a
// stream's bytes unread, so anything that would act on a request or a
// response (a timeout, a rewrite, a header change) is refused rather than
// silently ignored.
func TestConnectRouteRefusesRequestFeatures(t *testing.T) {
	clusters := map[string]bool{"app": true}
	if errs := (&Route{Connect: true, Cluster: "app"}).validate("r", clusters); len(errs) != 0 {
		t.Fatalf("a plain connect route: %v", errs)
	}
	for name, r := range map[string]Route{
		"timeout":        {Connect: true, Cluster: "app", Timeout: Duration(time.Second)},
		"host rewrite":   {Connect: true, Cluster: "app", HostRewrite: "other"},
		"path rewrite":   {Connect: true, Cluster: "app", PathRewrite: "/x"},
		"header removal": {Connect: true, Cluster: "app", ResponseHeadersToRemove: []string{"server"}},
		"no cluster":     {Connect: true},
	} {
		if errs := r.validate("r", clusters); len(errs) == 0 {
			t.Errorf("a connect route with a %s validated", name)
		}
	}
}
