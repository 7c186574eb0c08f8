package meshes

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestServiceBalancingRules: a Service's load balancing renders as
// kube-proxy's iptables mode does, endpoint i of n taken with probability
// 1/(n-i) by what the rules before it left, the last unconditionally.
func TestServiceBalancingRules(t *testing.T) {
	eps := []netip.Addr{netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("10.0.0.5")}
	r := Redirect{Node: "client", Service: eps[0], Port: 8080, Endpoints: eps}
	got := r.Rules("c")
	want := []string{
		"OUTPUT -p tcp -d 10.0.0.3/32 --dport 8080 -m statistic --mode random --probability 0.33333 -m comment --comment c -j DNAT --to-destination 10.0.0.3:8080",
		"OUTPUT -p tcp -d 10.0.0.3/32 --dport 8080 -m statistic --mode random --probability 0.50000 -m comment --comment c -j DNAT --to-destination 10.0.0.4:8080",
		"OUTPUT -p tcp -d 10.0.0.3/32 --dport 8080 -m comment --comment c -j DNAT --to-destination 10.0.0.5:8080",
	}
	var lines []string
	for _, rule := range got {
		lines = append(lines, strings.Join(rule, " "))
	}
	if !slices.Equal(lines, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// Pods: the service's first, then its replicas; the replicas share
	// its identity and authority.
	svc := Service{Workload: Workload{Name: "server", Port: 8080}, Replicas: []Workload{{Name: "server-1", App: "server", Port: 8080}}}
	if pods := svc.Pods(); len(pods) != 2 || pods[1].Account() != "server" || pods[1].Authority() != "server:8080" {
		t.Errorf("pods %+v", pods)
	}
	env := Env{Client: Workload{Name: "client"}, Services: []Service{svc}}
	if s, ok := env.ServiceOf(svc.Replicas[0]); !ok || s.Name != "server" || len(env.Workloads()) != 3 {
		t.Errorf("the replica's service: %v %v; workloads %v", s.Name, ok, env.Workloads())
	}
}
