package proxyless

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
)

// TestClientAndServerTalkMutualTLS builds both sides from bundles, as the
// proxyless mode does, and checks routing by service name, identities, and
// that a client with another identity is refused.
func TestClientAndServerTalkMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, _ := identity.NewCA("td", time.Hour)
	cid, sid := identity.SPIFFEID("td", "default", "client"), identity.SPIFFEID("td", "default", "server")
	issue := func(name, id string, peers ...string) *xds.TLSFiles {
		f := identity.FilesIn(dir, name)
		if err := ca.IssueFiles(f, id, time.Hour); err != nil {
			t.Fatal(err)
		}
		return &xds.TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA, PeerIDs: peers}
	}
	serverTLS := issue("server", sid, cid)
	server := &xds.Bundle{
		Listeners: []*listenerv3.Listener{xds.HTTPListener("inbound", "127.0.0.1:0", corev3.TrafficDirection_INBOUND, true, xds.Routes("in", []string{"*"}, "local"), serverTLS)},
		Clusters:  []*clusterv3.Cluster{xds.EDSCluster("local", time.Second, nil)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment("local", "127.0.0.1:1")},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sm, err := Start(ctx, xds.Static{Bundle: server}, "server", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sm.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sm.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, identity.PeerID(r.TLS.PeerCertificates[0])+" "+r.Host)
	}))}
	go srv.Serve(ln)
	defer srv.Close()

	client := func(name, id string) *http.Client {
		b := &xds.Bundle{
			Listeners: []*listenerv3.Listener{xds.HTTPListener("outbound", "0.0.0.0:0", corev3.TrafficDirection_OUTBOUND, false, xds.Routes("out", []string{"server:8080"}, "server"), nil)},
			Clusters:  []*clusterv3.Cluster{xds.EDSCluster("server", time.Second, issue(name, id, sid))},
			Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment("server", ln.Addr().String())},
		}
		cm, err := Start(ctx, xds.Static{Bundle: b}, name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := cm.Transport()
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	resp, err := client("client", cid).Get("http://server:8080/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != cid+" server:8080" {
		t.Errorf("server saw %q", body)
	}
	if _, err := client("intruder", identity.SPIFFEID("td", "default", "intruder")).Get("http://server:8080/"); err == nil {
		t.Error("a client with an identity the server does not allow was served")
	}
	if _, err := client("client2", cid).Get("http://elsewhere:80/"); err == nil {
		t.Error("a request for an unrouted service was sent")
	}
}
