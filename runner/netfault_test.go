package runner

import (
	"strings"
	"testing"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

// PacketFault reads each drawing action's own parameters, says when a
// correlation is not applied, and refuses a missing or bad percentage.
func TestPacketFault(t *testing.T) {
	for _, c := range []struct {
		spec chaosv1alpha1.NetworkChaosSpec
		pct  float64
		note string // a part of it; "" for none
		err  string
	}{
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.LossAction, TcParameter: chaosv1alpha1.TcParameter{Loss: &chaosv1alpha1.LossSpec{Loss: "30"}}}, pct: 30},
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.CorruptAction, TcParameter: chaosv1alpha1.TcParameter{Corrupt: &chaosv1alpha1.CorruptSpec{Corrupt: " 0.5", Correlation: "25"}}}, pct: 0.5, note: "correlation 25% not applied"},
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.DuplicateAction, TcParameter: chaosv1alpha1.TcParameter{Duplicate: &chaosv1alpha1.DuplicateSpec{Duplicate: "10"}}}, pct: 10},
		// The loss's parameters belong to another action: none given.
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.CorruptAction, TcParameter: chaosv1alpha1.TcParameter{Loss: &chaosv1alpha1.LossSpec{Loss: "30"}}}, err: "no corrupt given"},
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.LossAction, TcParameter: chaosv1alpha1.TcParameter{Loss: &chaosv1alpha1.LossSpec{Loss: "130"}}}, err: `loss "130" is not a percentage`},
		{spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.LossAction, TcParameter: chaosv1alpha1.TcParameter{Loss: &chaosv1alpha1.LossSpec{Loss: "NaN"}}}, err: `loss "NaN" is not a percentage`},
	} {
		pct, note, err := PacketFault(&c.spec)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v, want %q", c.spec.Action, err, c.err)
		case c.err == "" && (err != nil || pct != c.pct || (c.note == "") != (note == "") || !strings.Contains(note, c.note)):
			t.Errorf("%s: %v %q %v, want %v %q", c.spec.Action, pct, note, err, c.pct, c.note)
		}
	}
}

// SampledRules put each counting rule after its dropping rule in the
// list, so that inserted at the chains' heads in order (iptables -I 1,
// RestoreInput) the counting rule sees every packet the dropping one
// draws from: the packets' order through a chain is the reverse.
func TestSampledRules(t *testing.T) {
	drop, seen := SampledComments("c")
	rules := SampledRules(chaosv1alpha1.Both, "eth0", []string{"10.0.0.1", "10.0.0.2"}, "c", 30)
	if len(rules) != 8 {
		t.Fatalf("%d rules, want 8 (2 addresses, 2 chains, drop and count):\n%v", len(rules), rules)
	}
	index := func(chain, addr, comment string) int {
		for i, r := range rules {
			s := strings.Join(r, " ")
			if r[0] == chain && strings.Contains(s, addr) && strings.Contains(s, "--comment "+comment) {
				return i
			}
		}
		t.Fatalf("no %s rule for %s marked %s in %v", chain, addr, comment, rules)
		return -1
	}
	for _, chain := range []string{"OUTPUT", "INPUT"} {
		for _, addr := range []string{"10.0.0.1", "10.0.0.2"} {
			d, c := index(chain, addr, drop), index(chain, addr, seen)
			if c < d {
				t.Errorf("%s %s: the counting rule at %d, before its dropping rule at %d: inserted at the head, it would count only what was not dropped", chain, addr, c, d)
			}
			if r := strings.Join(rules[d], " "); !strings.Contains(r, "--probability 0.3 -j DROP") {
				t.Errorf("the dropping rule %q", r)
			}
			if r := rules[c]; r[len(r)-1] != seen {
				t.Errorf("the counting rule %q has a target", strings.Join(r, " "))
			}
		}
	}
}
