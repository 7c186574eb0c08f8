package scenarios

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

func TestFaults(t *testing.T) {
	s, err := LoadFile("testdata/valid-faults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Faults) != 8 {
		t.Fatalf("%d faults, want 8", len(s.Faults))
	}
	delay := s.Faults[0].Object.(*chaosv1alpha1.NetworkChaos)
	if f := s.Faults[0]; f.At.D() != 5*time.Second || delay.Spec.Delay.Latency != "100ms" || delay.Spec.Delay.Correlation != "25" ||
		delay.Spec.Selector.LabelSelectors[FaultLabel] != "back" {
		t.Errorf("delay decoded as at %s, %+v", f.At, delay.Spec)
	}
	if d, ok := s.Faults[0].Duration(); !ok || d != 10*time.Second {
		t.Errorf("delay lasts %s (%v), want 10s", d, ok)
	}
	if _, ok := s.Faults[2].Duration(); ok {
		t.Errorf("pod-kill has a duration; it is one-shot")
	}
	partition := s.Faults[1].Object.(*chaosv1alpha1.NetworkChaos)
	if got := SelectWorkloads(partition.Spec.Target, []string{"client", "front", "back"}); !reflect.DeepEqual(got, []string{"back"}) {
		t.Errorf("partition target selects %v, want [back]", got)
	}
	// Inline pointers (a Workflow template's *EmbedChaos) decode.
	wf := s.Faults[6].Object.(*chaosv1alpha1.Workflow)
	if tp := wf.Spec.Templates[1]; tp.EmbedChaos == nil || tp.NetworkChaos == nil || tp.NetworkChaos.Loss.Loss != "30" {
		t.Errorf("workflow template decoded as %+v", tp)
	}
	if got := s.FaultKindsUsed(); !reflect.DeepEqual(got, []string{"HTTPChaos", "NetworkChaos", "PodChaos", "Schedule", "StressChaos", "Workflow"}) {
		t.Errorf("kinds used: %v", got)
	}
	// Validation defaults a copy: the objects stay as written (kubectl
	// applies them as they are).
	if delay.Spec.Selector.Namespaces != nil || s.Faults[5].Object.(*chaosv1alpha1.Schedule).Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("validation changed the objects: %+v", delay.Spec.Selector)
	}
	data, err := json.Marshal(s.Faults)
	if err != nil {
		t.Fatal(err)
	}
	var back []Fault
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s.Faults) {
		t.Errorf("JSON round trip changed the faults:\n%s", data)
	}
}

func TestJSONPath(t *testing.T) {
	typ := reflect.TypeFor[*chaosv1alpha1.NetworkChaos]()
	for in, want := range map[string]string{
		"Spec.TcParameter.Delay.Latency": "spec.delay.latency",
		"Spec.PodSelector.value":         "spec.value",
		"Spec.direction":                 "spec.direction",
		"Spec.Target.Selector.Pods":      "spec.target.selector.pods",
		"Spec.ExternalTargets[1]":        "spec.externalTargets[1]",
	} {
		if got := jsonPath(typ, in); got != want {
			t.Errorf("jsonPath(%q) = %q, want %q", in, got, want)
		}
	}
	wf := reflect.TypeFor[*chaosv1alpha1.Workflow]()
	if got := jsonPath(wf, "Spec.Templates[2].EmbedChaos.PodChaos.Duration"); got != "spec.templates[2].podChaos.duration" {
		t.Errorf("workflow path: %q", got)
	}
}
