// Package meshtest builds the environments the meshes' tests render:
// client -> server, a 3-service chain and a fan-out, on namespaced or
// loopback nodes.
package meshtest

import (
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/meshes"
)

// Shapes maps a topology's name to its services' calls, entry first.
var Shapes = map[string][][]string{
	"pair":   {nil},
	"chain":  {{"svc-1"}, {"svc-2"}, nil},
	"fanout": {{"svc-1", "svc-2", "svc-3"}, nil, nil, nil},
	// replicated: svc-0 (2 pods) calls svc-1 (3 pods); see Replicas.
	"replicated": {{"svc-1"}, nil},
	// shared: svc-0 calls svc-1, svc-2 (2 pods) and svc-3, whose pods
	// share the node "shared" (see Shared); svc-2 calls svc-4.
	"shared": {{"svc-1", "svc-2", "svc-3"}, nil, {"svc-4"}, nil, nil},
}

// Replicas are, per shape, its services' pod counts (1 when not listed).
var Replicas = map[string][]int{"replicated": {2, 3}, "shared": {1, 1, 2, 1, 1}}

// Shared are, per shape, the services whose pods share the node "shared".
var Shared = map[string][]int{"shared": {1, 2, 3}}

// Env is the topology shape, each pod on a node of its own (and, for the
// shapes in Shared, those services' pods on a node they share): network namespaces
// (10.0.0.x, reached locally on 127.0.0.1) when netns, distinct loopback
// addresses (127.0.0.x) otherwise. Services are named svc-0, svc-1, ...
// and serve on port 8080.
func Env(dir, shape string, netns bool) meshes.Env {
	node := func(i int, name string) meshes.Node {
		if netns {
			return meshes.Node{Name: name, Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i)}), Local: netip.MustParseAddr("127.0.0.1")}
		}
		a := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
		return meshes.Node{Name: name, Addr: a, Local: a}
	}
	env := meshes.Env{Client: meshes.Workload{Name: "client", Node: node(0, "client")}, Dir: dir}
	n := 1
	for i, calls := range Shapes[shape] {
		name := fmt.Sprintf("svc-%d", i)
		svc := meshes.Service{Workload: meshes.Workload{Name: name, Node: node(n, name), Port: 8080, PayloadSize: 1024}, Calls: calls}
		n++
		if r := Replicas[shape]; i < len(r) {
			for k := 1; k < r[i]; k++ {
				pod := fmt.Sprintf("%s-%d", name, k)
				svc.Replicas = append(svc.Replicas, meshes.Workload{Name: pod, App: name, Node: node(n, pod), Port: 8080, PayloadSize: 1024})
				n++
			}
		}
		env.Services = append(env.Services, svc)
	}
	if len(Shared[shape]) > 0 {
		host, slot := node(n, "shared"), 0
		for _, i := range Shared[shape] {
			svc := &env.Services[i]
			svc.Host, svc.Slot = host, slot
			slot++
			for k := range svc.Replicas {
				svc.Replicas[k].Host, svc.Replicas[k].Slot = host, slot
				slot++
			}
		}
	}
	return env
}
