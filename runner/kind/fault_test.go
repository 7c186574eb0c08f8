package kind

import (
	"slices"
	"strings"
	"testing"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/chaos"
)

func TestCanInject(t *testing.T) {
	pod := func(a chaosv1alpha1.PodChaosAction, containers ...string) chaosv1alpha1.GenericChaos {
		return &chaosv1alpha1.PodChaos{Spec: chaosv1alpha1.PodChaosSpec{Action: a, ContainerSelector: chaosv1alpha1.ContainerSelector{ContainerNames: containers}}}
	}
	network := func(a chaosv1alpha1.NetworkChaosAction) chaosv1alpha1.GenericChaos {
		// Each drawing action's percentage, which CanInject checks.
		return &chaosv1alpha1.NetworkChaos{Spec: chaosv1alpha1.NetworkChaosSpec{Action: a, TcParameter: chaosv1alpha1.TcParameter{
			Loss: &chaosv1alpha1.LossSpec{Loss: "10"}, Corrupt: &chaosv1alpha1.CorruptSpec{Corrupt: "10"}}}}
	}
	for _, c := range []struct {
		obj  chaosv1alpha1.GenericChaos
		kube bool
		want string // "" for executed
	}{
		{pod(chaosv1alpha1.PodFailureAction), false, ""},
		{pod(chaosv1alpha1.PodKillAction), true, ""},
		{pod(chaosv1alpha1.ContainerKillAction, "proxy"), false, ""},
		{pod(chaosv1alpha1.ContainerKillAction), false, "containerNames is required"},
		{pod(chaosv1alpha1.ContainerKillAction, "istio-proxy"), true, `no container "istio-proxy" in the kube platform's pods`},
		{network(chaosv1alpha1.PartitionAction), false, ""},
		{network(chaosv1alpha1.DelayAction), false, "not executed on the kind platform yet"},
		{network(chaosv1alpha1.LossAction), true, ""},
		{network(chaosv1alpha1.CorruptAction), false, ""},
		{network(chaosv1alpha1.DuplicateAction), true, "not executed on the kube platform yet"},
		{network(chaosv1alpha1.BandwidthAction), false, ""},
		{&chaosv1alpha1.NetworkChaos{Spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.LossAction, TcParameter: chaosv1alpha1.TcParameter{Loss: &chaosv1alpha1.LossSpec{Loss: "NaN"}}}}, false, `loss "NaN" is not a percentage`},
		{&chaosv1alpha1.NetworkChaos{Spec: chaosv1alpha1.NetworkChaosSpec{Action: chaosv1alpha1.BandwidthAction, Target: &chaosv1alpha1.PodSelector{}}}, true, "bandwidth toward a target is not executed on the kube platform yet"},
		{&chaosv1alpha1.HTTPChaos{}, false, "not executed on the kind platform yet"},
		{&chaosv1alpha1.StressChaos{}, false, "not executed on the kind platform yet"},
	} {
		p := &platform{}
		if c.kube {
			p.o.Kube = &KubeTarget{}
		}
		a := chaos.Action{Object: c.obj}
		err := p.CanInject(a)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s (kube %v): %v, want executed", a.Verb(), c.kube, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s (kube %v): %v, want %q", a.Verb(), c.kube, err, c.want)
		}
	}
}

// RestoreInput inserts a fault's rules at their chains' heads in the
// order FilterRules gives them, and deletes them in reverse.
func TestRestoreInput(t *testing.T) {
	rules := runner.FilterRules(chaosv1alpha1.To, "eth0", []string{"10.0.0.9"}, "c", runner.PartitionTargets(chaosv1alpha1.RejectPartitionBehavior))
	want := "*filter\n" +
		"-I OUTPUT 1 -o eth0 -d 10.0.0.9 -m comment --comment c ! -p tcp -j REJECT\n" +
		"-I OUTPUT 1 -o eth0 -d 10.0.0.9 -m comment --comment c -p tcp ! --tcp-flags RST RST -j REJECT --reject-with tcp-reset\n" +
		"COMMIT\n"
	if got := string(RestoreInput("-I", rules)); got != want {
		t.Errorf("insert:\n%s\nwant\n%s", got, want)
	}
	want = "*filter\n" +
		"-D OUTPUT -o eth0 -d 10.0.0.9 -m comment --comment c -p tcp ! --tcp-flags RST RST -j REJECT --reject-with tcp-reset\n" +
		"-D OUTPUT -o eth0 -d 10.0.0.9 -m comment --comment c ! -p tcp -j REJECT\n" +
		"COMMIT\n"
	if got := string(RestoreInput("-D", rules)); got != want {
		t.Errorf("delete:\n%s\nwant\n%s", got, want)
	}
}

// The back-off the wrappers are given is the kubelet's, restart by
// restart, up to its cap (the last entry repeats from then on).
func TestRestartBackoff(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute}
	if !slices.Equal(restartBackoff, want) {
		t.Errorf("restartBackoff = %v, want %v", restartBackoff, want)
	}
}

// ParseCounts gives an agent's counts in the order asked, and refuses an
// answer that lacks one or is not its format.
func TestParseCounts(t *testing.T) {
	got, err := ParseCounts([]byte("b 7\na 12\n"), []string{"a", "b"})
	if err != nil || len(got) != 2 || got[0] != 12 || got[1] != 7 {
		t.Errorf("ParseCounts: %v %v, want [12 7]", got, err)
	}
	for _, bad := range []string{"a 12\n", "a 12\nb x\n", "a 12 b 7\n", "", "a 1\nb 2\na 3\n"} {
		if got, err := ParseCounts([]byte(bad), []string{"a", "b"}); err == nil {
			t.Errorf("ParseCounts(%q): %v, want an error", bad, got)
		}
	}
}
