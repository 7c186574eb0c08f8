package smps

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"

	smp "github.com/layer5io/service-mesh-performance/spec"

	"github.com/meshbench/meshbench/runner/results"
)

// EnvironmentID is the id of a run's EnvironmentConfig.
func EnvironmentID(runID string) string { return runID + "-env" }

// MeshConfigID is the id of a trial's ServiceMeshConfig.
func MeshConfigID(runID string, t *results.Trial) string { return ConfigID(runID, t) + "-mesh" }

// Environment describes where a run happened. On the local platform it
// has one node per platform node (a network namespace or a loopback
// address on one host, so every node reports the host's cores and memory,
// which they share); on Kubernetes, the cluster's nodes with their
// capacity, and the cluster and its version in labels. Either way the
// topology's pods are the individual workloads (the platform nodes less
// the ones pods share).
func Environment(m *results.Manifest) *smp.EnvironmentConfig {
	env := &smp.EnvironmentConfig{
		SmpVersion: Version,
		Id:         EnvironmentID(m.RunID),
		Labels: map[string]string{
			LabelRunID:    m.RunID,
			LabelPlatform: m.Platform.Name,
			LabelNetwork:  m.Platform.Network,
			LabelKernel:   m.Host.Kernel,
			LabelCPUModel: m.Host.CPUModel,
		},
	}
	var names []string
	for n := range m.Platform.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	if pl := m.Platform; pl.Kubernetes != "" {
		env.Labels[LabelKubernetes], env.Labels[LabelCluster] = pl.Kubernetes, pl.Cluster
		for _, n := range pl.KubeNodes {
			env.Nodes = append(env.Nodes, &smp.EnvironmentConfig_Node{
				Type:  fmt.Sprintf("%s node %s (%s, kubelet %s)", pl.Name, n.Name, n.Role, n.Kubelet),
				Cores: int32(n.CPUs),
				MemMb: n.MemoryMB,
			})
		}
	}
	for _, n := range names {
		if m.Platform.Kubernetes == "" {
			env.Nodes = append(env.Nodes, &smp.EnvironmentConfig_Node{
				Type:  fmt.Sprintf("%s-%s (%s, %s)", m.Platform.Name, m.Platform.Network, n, m.Platform.Nodes[n]),
				Cores: int32(m.Host.CPUs),
				MemMb: m.Host.MemoryMB,
			})
		}
	}
	// The workloads are the topology's pods; the nodes also hold the ones
	// pods share (services[].node).
	workloads := names
	if m.Scenario != nil {
		workloads = slices.Sorted(slices.Values(m.Scenario.Topology.Workloads()))
	}
	for _, n := range workloads {
		env.IndividualWorkloads = append(env.IndividualWorkloads, &smp.EnvironmentConfig_IndividualWorkload{Name: n, Count: 1})
	}
	return env
}

// meshTypes maps mesh names to SMP's enumeration; meshes it lacks are
// INVALID_MESH there and named in a label.
var meshTypes = map[string]smp.ServiceMesh_Type{
	"nginx": smp.ServiceMesh_NGINX_SERVICE_MESH,
}

// MeshConfig describes the data plane of one trial: its proxies' count and
// cost (per proxy: mean CPU, peak RSS), mTLS, and the proxy build.
func MeshConfig(m *results.Manifest, t *results.Trial) *smp.ServiceMeshConfig {
	mc := &smp.ServiceMeshConfig{
		SmpVersion:  Version,
		Id:          MeshConfigID(m.RunID, t),
		Labels:      map[string]string{LabelMesh: t.Mesh, LabelMode: t.Mode, LabelTrial: fmt.Sprint(t.Trial)},
		MtlsEnabled: t.MTLS,
		ProxyBuild:  t.DataPlane,
		MeshType:    &smp.ServiceMesh{Type: meshTypes[t.Mesh], Version: t.DataPlane},
		// Every proxy is pinned to one CPU (the load generator has the other).
		ProxyConcurrency: 1,
	}
	var n int32
	var cpu, mem float64
	for _, u := range t.Components {
		if u.Class == results.ClassProxy {
			n++
			cpu += u.CPUMillicores
			mem += u.RSSMaxMB
		}
	}
	if n > 0 {
		mc.Sidecar = &smp.ServiceMeshConfig_Sidecar{
			Count: n, CpuMcores: int32(cpu / float64(n)), MemMb: int32(mem / float64(n)), Rps: int32(t.Achieved),
		}
	}
	return mc
}

// ControlPlaneConfig describes a control-plane benchmark step: SMP's
// MeshControlPlane with the control plane's CPU and peak RSS, the clients
// as sidecars, and the time until 90% of them had acknowledged a listener
// (lds_latency_ms) and a cluster (cds_latency_ms) change (medians over the
// repeats). Every change's percentiles are in labels, to the microsecond.
func ControlPlaneConfig(m *results.Manifest, st *results.ControlPlaneStep) *smp.ServiceMeshConfig {
	cp := &smp.ServiceMeshConfig_MeshControlPlane{
		Count:     1,
		CpuMcores: int32(math.Round(st.ControlPlane.CPUMillicores)),
		MemMb:     int32(math.Ceil(st.ControlPlane.RSSMaxMB)),
		Sidecars:  int32(st.Clients),
	}
	labels := map[string]string{
		LabelMesh: st.Mesh, LabelMode: st.Mode,
		LabelClients: strconv.Itoa(st.Clients), LabelSimulated: strconv.Itoa(st.Simulated), LabelReplicaOf: st.ReplicaOf,
	}
	for _, ch := range st.Changes {
		l := ch.LatencyMs
		for name, v := range map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99, "max": l.Max} {
			labels[LabelPropagationPrefix+ch.Change+"-"+name+"-ms"] = fmtFloat(v)
		}
		labels[LabelPropagationPrefix+ch.Change+"-missed"] = strconv.Itoa(ch.Missed)
		switch ch.Change {
		case "listener":
			cp.LdsLatencyMs = int32(math.Ceil(l.P90))
		case "cluster":
			cp.CdsLatencyMs = int32(math.Ceil(l.P90))
		}
	}
	return &smp.ServiceMeshConfig{
		SmpVersion:       Version,
		Id:               fmt.Sprintf("%s-%s-%s-control-plane-%d", m.RunID, st.Mesh, st.Mode, st.Clients),
		Labels:           labels,
		MeshType:         &smp.ServiceMesh{Type: meshTypes[st.Mesh]},
		MeshControlPlane: cp,
	}
}
