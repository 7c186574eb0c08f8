package controlplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/xds"
)

// startServer serves a control plane on loopback until the test ends.
func startServer(t *testing.T, opts ...Option) (*Server, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp := New(ctx, append([]Option{WithLogger(tlog{t})}, opts...)...)
	g := grpc.NewServer()
	cp.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	t.Cleanup(func() { g.Stop(); cancel() })
	return cp, ln.Addr().String()
}

// adsProxy runs a proxy that takes its configuration from the control
// plane at addr as node.
func adsProxy(t *testing.T, addr, node string) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(proxy.Config{Node: node}, proxy.AwaitConfig(), proxy.WithDrainTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- p.Run(ctx) }()
	go func() { done <- (&xds.ADS{Addr: addr, Node: node, Log: tlog{t}}).Run(ctx, xds.Apply(p, node)) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	return p
}

type tlog struct{ t testing.TB }

func (l tlog) Logf(format string, args ...any) { l.t.Helper(); l.t.Logf(format, args...) }

func upstreamNamed(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// bundleTo is one outbound listener routing everything to endpoint.
func bundleTo(endpoint string) *xds.Bundle {
	return &xds.Bundle{
		Listeners: []*listenerv3.Listener{xds.HTTPListener("out", "127.0.0.1:0", corev3.TrafficDirection_OUTBOUND, false, xds.Routes("out", []string{"*"}, "c"), nil)},
		Clusters:  []*clusterv3.Cluster{xds.EDSCluster("c", time.Second, nil)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment("c", endpoint)},
	}
}

func waitVersion(t *testing.T, p *proxy.Proxy, v string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); p.Version() != v; {
		if time.Now().After(deadline) {
			t.Fatalf("proxy at version %q, want %q", p.Version(), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func get(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestProxyOverADS: a proxy subscribed over ADS serves each version the
// control plane sets, ACKs it, and NACKs, with the reason, one it cannot
// serve, keeping the version it had.
func TestProxyOverADS(t *testing.T) {
	cp, addr := startServer(t)
	a, b := upstreamNamed(t, "a"), upstreamNamed(t, "b")
	p := adsProxy(t, addr, "node-1")
	if v, err := cp.Set(context.Background(), map[string]*xds.Bundle{"node-1": bundleTo(a)}); err != nil || v != "1" {
		t.Fatalf("set: %v %v", v, err)
	}
	waitVersion(t, p, "1")
	if got := get(t, p.Addr("out")); got != "a" {
		t.Errorf("version 1 answered %q, want a", got)
	}
	if _, err := cp.Set(context.Background(), map[string]*xds.Bundle{"node-1": bundleTo(b)}); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, p, "2")
	if got := get(t, p.Addr("out")); got != "b" {
		t.Errorf("version 2 answered %q, want b", got)
	}

	// Version 3 adds a health check, which the proxy does not do, and
	// changes nothing else.
	bad := bundleTo(b)
	bad.Clusters[0].HealthChecks = []*corev3.HealthCheck{{Timeout: durationpb.New(time.Second)}}
	if _, err := cp.Set(context.Background(), map[string]*xds.Bundle{"node-1": bad}); err != nil {
		t.Fatal(err)
	}
	var st NodeStatus
	for deadline := time.Now().Add(20 * time.Second); len(st.NACKs) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no NACK of version 3: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
		st = cp.Status()["node-1"]
	}
	n := st.NACKs[0]
	if n.Version != "3" || n.Type != "envoy.config.cluster.v3.Cluster" || !strings.Contains(n.Message, "health_checks") {
		t.Errorf("NACK %+v, want version 3 of the cluster type, naming health_checks", n)
	}
	if p.Version() != "2" || get(t, p.Addr("out")) != "b" {
		t.Errorf("after the NACK the proxy is at version %q", p.Version())
	}
	// Each type is versioned on its own: the listener never changed after
	// version 1, the endpoints did in version 2.
	if !st.Connected || st.Client != "meshbench-proxy" || st.Acked["envoy.config.listener.v3.Listener"] != "1" ||
		st.Acked["envoy.config.endpoint.v3.ClusterLoadAssignment"] != "2" || st.Acked["envoy.config.cluster.v3.Cluster"] != "1" || st.Current {
		t.Errorf("status %+v: want connected, meshbench-proxy, listeners and clusters acked at version 1, endpoints at 2, not current", st)
	}
}

// TestUnchangedNodeHearsNothing: a version that changes nothing of a node
// sends it nothing (its snapshot stays the one it acknowledged).
func TestUnchangedNodeHearsNothing(t *testing.T) {
	cp, addr := startServer(t)
	a := upstreamNamed(t, "a")
	p := adsProxy(t, addr, "node-1")
	set := func(b *xds.Bundle) string {
		t.Helper()
		v, err := cp.Set(context.Background(), map[string]*xds.Bundle{"node-1": b})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitVersion(t, p, set(bundleTo(a)))
	if v := set(bundleTo(a)); v != "2" {
		t.Fatalf("second version %q", v)
	}
	prop := cp.Propagation()
	if prop.Changed != 0 || prop.Connected != 1 || prop.Current != 1 {
		t.Errorf("propagation of an unchanged version: %+v, want 1 client, current, none changed", prop)
	}
	if st := cp.Status()["node-1"]; !st.Current || st.Acked["envoy.config.listener.v3.Listener"] != "1" {
		t.Errorf("status %+v: want current at version 1", st)
	}
}
