package controlplane

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/xds"
)

// waitPropagation polls until want clients are connected and all of them
// run version (any version when version is "").
func waitPropagation(t *testing.T, cp *Server, want int, version string) Propagation {
	t.Helper()
	var p Propagation
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		p = cp.Propagation()
		if p.Connected == want && p.Current == want && (version == "" || p.Version == version) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("propagation %+v: want %d clients current at version %q", p, want, version)
		}
	}
}

// TestBenchChangesPropagate: simulated clients that name a node as their
// cluster are served that node's configuration and hear every change to
// it; each kind of synthetic change reaches them all (and a real proxy,
// which keeps routing as before: the changes change no request's fate);
// a replica that leaves is forgotten.
func TestBenchChangesPropagate(t *testing.T) {
	cp, addr := startServer(t)
	up := upstreamNamed(t, "up")
	ctx := context.Background()
	plane, err := NewPlane(ctx, cp, &Model{}, map[string]*xds.Bundle{"node-1": bundleTo(up)})
	if err != nil {
		t.Fatal(err)
	}
	p := adsProxy(t, addr, "node-1")
	waitVersion(t, p, "1")

	const replicas = 20
	rctx, leave := context.WithCancel(ctx)
	done := make(chan error, replicas)
	applied := make(chan string, 10*replicas)
	for i := range replicas {
		a := &xds.ADS{Addr: addr, Node: fmt.Sprintf("sim-%d", i), Cluster: "node-1", UserAgent: "test-sim", Log: tlog{t}}
		go func() {
			done <- a.Run(rctx, func(b *xds.Bundle) error {
				if len(b.Listeners) != 1 || len(b.Clusters) != 1 || len(b.Endpoints) != 1 {
					return fmt.Errorf("replica got %d listeners, %d clusters, %d endpoints", len(b.Listeners), len(b.Clusters), len(b.Endpoints))
				}
				applied <- b.VersionInfo
				return nil
			})
		}()
	}
	waitPropagation(t, cp, replicas+1, "1")
	if st := cp.Status()["sim-3"]; st.ReplicaOf != "node-1" || st.Client != "test-sim" {
		t.Errorf("replica status %+v", st)
	}

	for i, kind := range ChangeKinds {
		v, err := plane.Bench(ctx, kind)
		if want := fmt.Sprint(i + 2); err != nil || v != want {
			t.Fatalf("%s change: version %q, %v; want %s", kind, v, err, want)
		}
		prop := waitPropagation(t, cp, replicas+1, v)
		if len(prop.AckedAfterMs) != replicas+1 || prop.AckedAfterMs[0] < 0 || prop.AckedAfterMs[replicas] > 30e3 {
			t.Errorf("%s change: acknowledgement times %v", kind, prop.AckedAfterMs)
		}
		waitVersion(t, p, v)
		if got := get(t, p.Addr("out")); got != "up" {
			t.Errorf("after the %s change the proxy answered %q", kind, got)
		}
	}
	if _, err := plane.Bench(ctx, "secret"); err == nil {
		t.Error("an unknown change kind was accepted")
	}
	// Every replica applied every version once.
	if got, want := len(applied), replicas*(len(ChangeKinds)+1); got != want {
		t.Errorf("replicas applied %d configurations, want %d", got, want)
	}

	leave()
	for range replicas {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	waitPropagation(t, cp, 1, "")
	if st, ok := cp.Status()["sim-3"]; ok {
		t.Errorf("a replica that left is still known: %+v", st)
	}
	if _, err := plane.Bench(ctx, "cluster"); err != nil {
		t.Fatal(err)
	}
	waitPropagation(t, cp, 1, "6")
}

// TestMarksChangeTheirType: each kind of change alters its type's
// resources, and only a copy: the base configuration stays as it was.
func TestMarksChangeTheirType(t *testing.T) {
	base := map[string]*xds.Bundle{"n": bundleTo("127.0.0.1:1")}
	before, err := base["n"].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	prev := before
	for _, kind := range ChangeKinds {
		for n := 1; n <= 2; n++ {
			got, err := marks{kind: n}.apply(base)
			if err != nil {
				t.Fatal(err)
			}
			b := got["n"]
			cfg, err := xds.Translate(b, "n", "")
			if err != nil {
				t.Fatalf("%s change %d does not translate: %v", kind, n, err)
			}
			if len(cfg.Listeners) != 1 || len(cfg.Clusters) != 1 {
				t.Fatalf("%s change %d: %+v", kind, n, cfg)
			}
			data, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(data) == string(prev) {
				t.Errorf("%s change %d changed nothing", kind, n)
			}
			prev = data
		}
	}
	if after, _ := base["n"].Marshal(); string(after) != string(before) {
		t.Error("the base configuration was changed")
	}
}
