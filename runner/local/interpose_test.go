package local

import (
	"net/netip"
	"slices"
	"testing"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner"
)

func TestListeningPorts(t *testing.T) {
	// /proc/net/tcp then tcp6, as a node's namespace shows them: the
	// node's address is 10.213.0.2 (0200D50A in host byte order).
	procNet := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0200D50A:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0300D50A:3A9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0200D50A:3A98 0100D50A:C350 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   4: 00000000:3A9F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000200D50A:3AA0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8 1 0000000000000000 100 0 0 10 0
`
	got := listeningPorts(procNet, netip.MustParseAddr("10.213.0.2"))
	// 8080 on 127.0.0.1 and 8081 on ::1 are not reachable from outside,
	// 15006 on another address is not the node's, the established
	// socket is not listening; 8080 on :: is, as are 15000, 15007 and the
	// v4-mapped 15008.
	want := []int{8080, 15000, 15007, 15008}
	if !slices.Equal(got, want) {
		t.Errorf("listening ports %v, want %v", got, want)
	}
}

// TestDelayedStreams: a delay with a target acts on the streams between
// the two sides in the direction asked, each once, even where a pod is
// both selected and a target (a repeated stream would be a second toxic
// of the same name, which toxiproxy refuses).
func TestDelayedStreams(t *testing.T) {
	pods := func(nodes ...string) []runner.FaultPod {
		var out []runner.FaultPod
		for _, n := range nodes {
			out = append(out, runner.FaultPod{Workload: n, Node: n})
		}
		return out
	}
	cases := []struct {
		name   string
		in     runner.Injection
		dir    chaosv1alpha1.Direction
		target bool
		want   []delayed
	}{
		{"no target", runner.Injection{Pods: pods("a")}, chaosv1alpha1.To, false,
			[]delayed{{"a", "", "downstream"}}},
		{"to", runner.Injection{Pods: pods("a"), Peers: []string{"b"}}, chaosv1alpha1.To, true,
			[]delayed{{"a", "b", "downstream"}, {"b", "a", "upstream"}}},
		{"from", runner.Injection{Pods: pods("a"), Peers: []string{"b"}}, chaosv1alpha1.From, true,
			[]delayed{{"a", "b", "upstream"}, {"b", "a", "downstream"}}},
		{"both, overlapping", runner.Injection{Pods: pods("a", "b"), Peers: []string{"a", "b"}}, chaosv1alpha1.Both, true,
			[]delayed{{"a", "b", "downstream"}, {"b", "a", "upstream"}, {"a", "b", "upstream"}, {"b", "a", "downstream"}}},
	}
	for _, c := range cases {
		if got := delayedStreams(c.in, c.dir, c.target); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
