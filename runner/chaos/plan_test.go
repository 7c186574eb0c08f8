package chaos

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/scenarios"
)

func TestPlan(t *testing.T) {
	s, err := scenarios.LoadFile("../../scenarios/testdata/valid-faults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	acts, err := Plan(s, 42)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name            string
		start, duration time.Duration
		targets, peers  []string
	}
	var got []row
	for _, a := range acts {
		got = append(got, row{a.Name(), a.Start, a.Duration, a.Targets, a.Peers})
	}
	sec := time.Second
	want := []row{
		{"PodChaos/kill-back", 0, 0, []string{"back"}, nil},
		{"NetworkChaos/back-delay", 5 * sec, 10 * sec, []string{"back"}, nil},
		{"Schedule/kill-every-5s/firing-1", 5 * sec, 0, []string{"back"}, nil},
		{"Schedule/kill-every-5s/firing-2", 10 * sec, 0, []string{"back"}, nil},
		{"Workflow/serial/loss", 10 * sec, 5 * sec, []string{"back"}, nil},
	}
	if len(got) != 19 || !reflect.DeepEqual(got[:5], want) {
		t.Fatalf("%d actions, first %+v\nwant 19, first %+v", len(got), got[:min(5, len(got))], want)
	}
	byName := map[string]Action{}
	for _, a := range acts {
		byName[a.Name()] = a
	}
	if a := byName["Workflow/serial/failure"]; a.Start != 20*sec || a.Duration != 5*sec || a.Verb() != "PodChaos pod-failure" {
		t.Errorf("the workflow's last step: %+v (%s); want at 20s for 5s, after the loss and the suspend", a, a.Verb())
	}
	if a := byName["NetworkChaos/partition"]; !reflect.DeepEqual(a.Targets, []string{"front"}) || !reflect.DeepEqual(a.Peers, []string{"back"}) {
		t.Errorf("partition: targets %v peers %v", a.Targets, a.Peers)
	}
	if a := byName["Schedule/kill-every-5s/firing-11"]; a.Start != 55*sec {
		t.Errorf("the schedule's last firing: %+v, want at 55s", a)
	}
	if a := byName["NetworkChaos/to-the-end"]; a.Start != 50*sec || a.Duration != 10*sec {
		t.Errorf("a fault without a duration: %+v, want to the window's end (50s for 10s)", a)
	}
	again, _ := Plan(s, 42)
	if !reflect.DeepEqual(again, acts) {
		t.Errorf("the same seed gave another plan")
	}
}

func TestPick(t *testing.T) {
	p := &planner{pods: []scenarios.Pod{{Name: "client", App: "client"}, {Name: "a", App: "a"}, {Name: "b", App: "b"}, {Name: "c", App: "c"}, {Name: "d", App: "d"}}}
	all := &chaosv1alpha1.PodSelector{Selector: chaosv1alpha1.PodSelectorSpec{GenericSelectorSpec: chaosv1alpha1.GenericSelectorSpec{
		ExpressionSelectors: chaosv1alpha1.LabelSelectorRequirements{{Key: scenarios.FaultLabel, Operator: "NotIn", Values: []string{"client"}}}}}}
	for seed := uint64(1); seed <= 20; seed++ {
		p.rng = newRand(seed)
		for mode, want := range map[chaosv1alpha1.SelectorMode]int{"one": 1, "all": 4, "fixed": 3, "fixed-percent": 2} {
			ps := *all
			ps.Mode, ps.Value = mode, map[chaosv1alpha1.SelectorMode]string{"fixed": "3", "fixed-percent": "50"}[mode]
			got, err := p.pick(&ps)
			if err != nil || len(got) != want {
				t.Fatalf("seed %d mode %s: %v %v, want %d workloads", seed, mode, got, err, want)
			}
			for _, w := range got {
				if w == "client" {
					t.Fatalf("mode %s picked the client, which the selector leaves out", mode)
				}
			}
		}
		ps := *all
		ps.Mode, ps.Value = "random-max-percent", "50"
		if got, _ := p.pick(&ps); len(got) > 2 {
			t.Fatalf("random-max-percent 50 of 4 picked %v", got)
		}
	}
}

// TestPlanEdges: a parent's deadline ends its children (as Chaos Mesh
// aborts them), and a schedule that never fires adds nothing.
func TestPlanEdges(t *testing.T) {
	s, err := scenarios.Parse("edges.yaml", []byte(`apiVersion: meshbench/v1
name: edges
meshes: [{name: meshbench, mode: sidecar}]
load: {qps: 10, duration: 30s}
faults:
  - at: 2s
    apiVersion: chaos-mesh.org/v1alpha1
    kind: Workflow
    metadata: {name: cut-short}
    spec:
      entry: entry
      templates:
        - {name: entry, templateType: Serial, deadline: 3s, children: [slow, after]}
        - name: slow
          templateType: NetworkChaos
          deadline: 5s
          networkChaos: {action: partition, mode: all, selector: {labelSelectors: {app: server}}}
        - name: after
          templateType: PodChaos
          deadline: 5s
          podChaos: {action: pod-failure, mode: all, selector: {labelSelectors: {app: server}}}
  - apiVersion: chaos-mesh.org/v1alpha1
    kind: Schedule
    metadata: {name: never}
    spec:
      schedule: "0 0 30 2 *"
      type: PodChaos
      podChaos: {action: pod-kill, mode: one, selector: {labelSelectors: {app: server}}}
`))
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		t.Fatal(err)
	}
	acts, err := Plan(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range acts {
		got = append(got, fmt.Sprintf("%s %s+%s", a.Name(), a.Start, a.Duration))
	}
	// "after" would start when "slow" ends, at the deadline: nothing left.
	want := []string{"Workflow/cut-short/slow 2s+3s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
}

// TestPickReplicas: a selector on a replicated service's app label matches
// each of its pods, and mode one picks one of them, each in turn over
// seeds.
func TestPickReplicas(t *testing.T) {
	s := &scenarios.Scenario{Topology: scenarios.Topology{Client: scenarios.Client{Name: "client"}, Server: scenarios.Server{Name: "server", Replicas: 3}}}
	p := &planner{pods: s.Topology.Pods()}
	ps := &chaosv1alpha1.PodSelector{Mode: chaosv1alpha1.OneMode, Selector: chaosv1alpha1.PodSelectorSpec{GenericSelectorSpec: chaosv1alpha1.GenericSelectorSpec{
		LabelSelectors: map[string]string{scenarios.FaultLabel: "server"}}}}
	if all := scenarios.SelectWorkloads(ps, p.pods); !reflect.DeepEqual(all, []string{"server", "server-1", "server-2"}) {
		t.Fatalf("app=server selects %v", all)
	}
	seen := map[string]bool{}
	for seed := uint64(1); seed <= 30; seed++ {
		p.rng = newRand(seed)
		got, err := p.pick(ps)
		if err != nil || len(got) != 1 {
			t.Fatalf("seed %d: %v %v", seed, got, err)
		}
		seen[got[0]] = true
	}
	if len(seen) != 3 {
		t.Errorf("mode one picked %v over 30 seeds, want each of the 3 pods", seen)
	}
}
