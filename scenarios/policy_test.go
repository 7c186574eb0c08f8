package scenarios

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestPolicies(t *testing.T) {
	s, err := LoadFile("testdata/valid-policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Policies) != 6 || s.OnUnsupportedPolicy != PolicySkip {
		t.Fatalf("policies %d, onUnsupportedPolicy %q", len(s.Policies), s.OnUnsupportedPolicy)
	}
	weights := func(at time.Duration) map[string]int {
		out := map[string]int{}
		for _, p := range s.PoliciesAt(Duration(at)) {
			if ts, ok := p.Object.(*splitv1alpha4.TrafficSplit); ok {
				for _, b := range ts.Spec.Backends {
					out[b.Service] = b.Weight
				}
			}
		}
		return out
	}
	for at, want := range map[time.Duration]map[string]int{
		0:                {"app-v1": 90, "app-v2": 10},
		15 * time.Second: {"app-v1": 50, "app-v2": 50},
		25 * time.Second: {"app-v2": 100},
	} {
		if got := weights(at); !reflect.DeepEqual(got, want) {
			t.Errorf("split at %s: %v, want %v", at, got, want)
		}
	}
	if got := len(s.PoliciesAt(Duration(25 * time.Second))); got != 4 {
		t.Errorf("%d objects in force at 25s, want 4 (the last split replaces the others)", got)
	}
	if got, want := s.PolicyChanges(), []Duration{Duration(10 * time.Second), Duration(20 * time.Second)}; !reflect.DeepEqual(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	if got := s.Alternatives()["app"]; !reflect.DeepEqual(got, []string{"app-v1", "app-v2"}) {
		t.Errorf("alternatives of app: %v", got)
	}
	route := s.Policies[5].Object.(*gatewayv1.HTTPRoute)
	if r := route.Spec.Rules[0]; string(*r.Timeouts.Request) != "2s" || r.Matches[0].Headers[0].Value != "true" ||
		r.Filters[0].RequestHeaderModifier.Add[0].Name != "x-route" {
		t.Errorf("HTTPRoute decoded as %+v", r)
	}
	// The manifest echoes the scenario as JSON, and reads it back.
	data, err := json.Marshal(s.Policies)
	if err != nil {
		t.Fatal(err)
	}
	var back []Policy
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s.Policies) {
		t.Errorf("JSON round trip changed the policies:\n%s", data)
	}
}
