package runner

import (
	"maps"
	"strings"
	"testing"

	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/meshes/haproxy"
	"github.com/meshbench/meshbench/meshes/meshbench"
	"github.com/meshbench/meshbench/meshes/nginx"
	"github.com/meshbench/meshbench/meshes/none"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

func registry() map[string]meshes.Mesh {
	return map[string]meshes.Mesh{"none": none.New(), "meshbench": meshbench.New("test"), "haproxy": haproxy.New(), "nginx": nginx.New()}
}

func TestPlanReportsEveryProblemWithItsLine(t *testing.T) {
	src := `apiVersion: meshbench/v1
name: plan
meshes:
  - {name: none, mode: baseline}
  - {name: istio, mode: sidecar}
  - {name: none, mode: sidecar}
load: {qps: 10, duration: 1s}
`
	s, err := scenarios.Parse("plan.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Plan(s, registry())
	if err == nil {
		t.Fatal("Plan accepted an unknown mesh and an unsupported mode")
	}
	for _, want := range []string{
		`plan.yaml:5:12: meshes[1].name: unknown mesh "istio" (known: haproxy, meshbench, nginx, none)`,
		`plan.yaml:6:24: meshes[2].mode: mesh "none" does not support mode "sidecar"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestPlanRefusesACommandThisHostLacks: a command probe's program is
// looked up on the host that runs it, at planning (nothing started).
func TestPlanRefusesACommandThisHostLacks(t *testing.T) {
	src := `apiVersion: meshbench/v1
name: plan
meshes:
  - {name: none, mode: baseline}
load: {qps: 10, duration: 5s}
faults:
  - apiVersion: chaos-mesh.org/v1alpha1
    kind: PodChaos
    metadata: {name: kill}
    spec: {action: pod-kill, mode: one, selector: {labelSelectors: {app: server}}}
probes:
  - name: here
    type: command
    command: ["sh", "-c", "true"]
  - name: elsewhere
    type: command
    command: [no-such-program-on-this-host]
`
	s, err := scenarios.Parse("plan.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Plan(s, registry())
	want := `plan.yaml:17:14: probes[1].command: "no-such-program-on-this-host" cannot be run on this host`
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "probes[0]") {
		t.Errorf("Plan: %v; want only %q", err, want)
	}
}

// defaultSlots are the slots the default scenario plans.
func defaultSlots(t *testing.T) []slot {
	t.Helper()
	s, err := scenarios.LoadBuiltin(scenarios.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	slots, _, err := Plan(s, registry())
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

func TestOrderRotatesEverySlotThroughEveryPosition(t *testing.T) {
	slots := defaultSlots(t)
	if len(slots) < 3 {
		t.Fatalf("the default scenario plans %d slots; the test needs 3 or more", len(slots))
	}
	seen := map[string]map[int]int{}
	for trial := 1; trial <= 2*len(slots); trial++ {
		for pos, sl := range order(slots, trial, scenarios.OrderRotate, 0) {
			if seen[sl.key()] == nil {
				seen[sl.key()] = map[int]int{}
			}
			seen[sl.key()][pos]++
		}
	}
	for k, positions := range seen {
		for pos := range slots {
			if positions[pos] != 2 {
				t.Errorf("%s took position %d %d times over %d trials, want 2 (positions: %v)", k, pos, positions[pos], 2*len(slots), positions)
			}
		}
	}
}

// Two rows compared trial by trial (a candidate build beside its base)
// must each run first as often as the other: else whatever running second
// does to a row (a carry-over of the one before) is a bias of the pair.
func TestOrderRotateBalancesWhichRunsFirst(t *testing.T) {
	slots := defaultSlots(t)
	for trials := 2; trials <= 8; trials += 2 {
		before := map[[2]string]int{} // [a, b]: trials in which a ran before b
		next := map[[2]string]int{}   // [a, b]: trials in which b ran right after a
		for trial := 1; trial <= trials; trial++ {
			o := order(slots, trial, scenarios.OrderRotate, 0)
			for i := range o {
				for j := i + 1; j < len(o); j++ {
					before[[2]string{o[i].key(), o[j].key()}]++
				}
				if i > 0 {
					next[[2]string{o[i-1].key(), o[i].key()}]++
				}
			}
		}
		for _, a := range slots {
			for _, b := range slots {
				ab, ba := [2]string{a.key(), b.key()}, [2]string{b.key(), a.key()}
				if a.key() == b.key() {
					continue
				}
				if before[ab] != trials/2 {
					t.Errorf("%d trials: %s ran before %s in %d, want %d", trials, a.key(), b.key(), before[ab], trials/2)
				}
				if next[ab] != next[ba] {
					t.Errorf("%d trials: %s ran right after %s %d times, the other way round %d", trials, b.key(), a.key(), next[ab], next[ba])
				}
			}
		}
	}
}

func TestRandomOrderIsSeeded(t *testing.T) {
	s, err := scenarios.LoadBuiltin(scenarios.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	slots, _, _ := Plan(s, registry())
	keys := func(seed uint64, trial int) string {
		var k []string
		for _, sl := range order(slots, trial, scenarios.OrderRandom, seed) {
			k = append(k, sl.key())
		}
		return strings.Join(k, ",")
	}
	if keys(42, 1) != keys(42, 1) {
		t.Error("the same seed and trial gave different orders")
	}
	differs := false
	for trial := 2; trial <= 10; trial++ {
		differs = differs || keys(42, trial) != keys(42, 1)
	}
	if !differs {
		t.Error("random order is the same in every trial")
	}
}

// TestStatusesGroupErrorKinds: fortio's TCP error strings, which name the
// connection's addresses, count as one status per kind of error.
func TestStatusesGroupErrorKinds(t *testing.T) {
	res := &loadResult{RetCodes: []byte(`{"OK": 10, "read tcp 10.213.1.2:43210->10.213.1.3:8080: read: connection reset by peer": 1, "read tcp 10.213.1.2:43311->10.213.1.3:8080: read: connection reset by peer": 2, "short read": 3}`)}
	res.DurationHistogram = &stats.HistogramData{Count: 16}
	tr := &results.Trial{Protocol: "tcp"}
	if err := fillTrial(tr, res, &stats.HistogramData{}, &stats.HistogramData{}, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"OK": 10, "read tcp ADDR->ADDR: read: connection reset by peer": 3, "short read": 3}
	if !maps.Equal(tr.Statuses, want) || tr.Errors != 6 {
		t.Errorf("statuses %v, errors %d; want %v, 6", tr.Statuses, tr.Errors, want)
	}
}

// TestPlanVariants: a variant of the own mesh plans under its row name;
// one of a mesh whose proxies meshbench does not tune, or a proxy policy
// for a mode without a proxy process, is refused at its line.
func TestPlanVariants(t *testing.T) {
	src := `apiVersion: meshbench/v1
name: plan
meshes:
  - {name: meshbench, mode: sidecar}
  - {name: meshbench, mode: sidecar, as: meshbench-gogc400, proxy: {gogc: 400}}
load: {qps: 10, duration: 1s}
`
	s, err := scenarios.Parse("plan.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	slots, _, err := Plan(s, registry())
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 2 || slots[0].key() != "meshbench/sidecar" || slots[1].key() != "meshbench-gogc400/sidecar" {
		t.Fatalf("slots %v", slots)
	}
	bad := `apiVersion: meshbench/v1
name: plan
meshes:
  - {name: haproxy, mode: sidecar, as: haproxy-b}
  - {name: meshbench, mode: proxyless, as: lib, proxy: {gogc: 200}}
  - {name: meshbench, mode: sidecar, as: candidate, proxy: {binary: /nonexistent/meshbench-proxy}}
load: {qps: 10, duration: 1s}
`
	if s, err = scenarios.Parse("plan.yaml", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	_, _, err = Plan(s, registry())
	wantErrors(t, err,
		"plan.yaml:4:5: meshes[0]: haproxy-b/sidecar: mesh haproxy takes neither as nor proxy",
		"plan.yaml:5:5: meshes[1]: lib/proxyless: proxy: mode proxyless has no proxy process to tune",
		`plan.yaml:6:69: meshes[2].proxy.binary: cannot be run on this host: exec: "/nonexistent/meshbench-proxy"`)
	// A host build cannot run in a kind cluster's pods; a variant's row
	// name may not be another mesh's.
	kind := `apiVersion: meshbench/v1
name: plan
platform: kind
meshes:
  - {name: meshbench, mode: sidecar, as: candidate, proxy: {binary: /bin/true}}
  - {name: meshbench, mode: per-node, as: haproxy}
load: {qps: 10, duration: 1s}
`
	if s, err = scenarios.Parse("plan.yaml", []byte(kind)); err != nil {
		t.Fatal(err)
	}
	_, _, err = Plan(s, registry())
	wantErrors(t, err,
		"plan.yaml:5:69: meshes[0].proxy.binary: a build on this host runs on the local platform only (the kind platform runs the builds in its pods' image)",
		`plan.yaml:6:43: meshes[1].as: "haproxy" is another mesh's name: a variant's rows would mix with its rows`)
}

// wantErrors fails t unless err says every one of want.
func wantErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
