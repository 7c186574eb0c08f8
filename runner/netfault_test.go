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
