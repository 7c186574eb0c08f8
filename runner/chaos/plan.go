// Package chaos turns a scenario's faults (Chaos Mesh objects) into the
// timed actions of a measured window: Schedules fire by their cron
// schedule, Workflows run their Serial, Parallel and Suspend steps, and
// each action's selector picks its workloads by its mode from a recorded
// seed. It executes nothing: platforms do (runner.FaultInjector).
package chaos

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/scenarios"
)

// Action is one fault in force over part of the window: a chaos object of
// an executable kind (PodChaos, NetworkChaos, HTTPChaos, StressChaos) on
// the workloads its selector picked.
type Action struct {
	// Index is the scenario fault's index in its faults list.
	Index int
	// Fault is the scenario fault it comes from (kind/name); Step says
	// which firing or template of a Schedule or Workflow ("" for a plain
	// object).
	Fault, Step string
	// Start is when it starts, from the window's start; Duration is how
	// long it lasts, 0 for a one-shot action (pod-kill, container-kill).
	Start, Duration time.Duration
	// Object is the chaos object (for a Schedule's or a Workflow's step,
	// one made from the embedded spec).
	Object chaosv1alpha1.GenericChaos
	// Targets are the workloads the selector picked; Peers, for a
	// NetworkChaos with a target, the workloads on the other side.
	Targets, Peers []string
}

// Kind is the action's object kind (its Go type's name).
func (a Action) Kind() string { return reflect.TypeOf(a.Object).Elem().Name() }

// Verb is the action's kind and action ("NetworkChaos partition").
func (a Action) Verb() string {
	switch o := a.Object.(type) {
	case *chaosv1alpha1.PodChaos:
		return a.Kind() + " " + string(o.Spec.Action)
	case *chaosv1alpha1.NetworkChaos:
		return a.Kind() + " " + string(o.Spec.Action)
	case *chaosv1alpha1.HTTPChaos:
		return a.Kind() + " " + string(o.Spec.Target)
	}
	return a.Kind()
}

// Name identifies the action in events and errors.
func (a Action) Name() string {
	if a.Step == "" {
		return a.Fault
	}
	return a.Fault + "/" + a.Step
}

// End is when the action ends (its start, for a one-shot action).
func (a Action) End() time.Duration { return a.Start + a.Duration }

// maxActions bounds a plan (a Schedule firing every second over a long
// window is thousands).
const maxActions = 10000

// Plan expands the scenario's faults over a window of the scenario's
// load.duration into actions sorted by start, picking each action's
// workloads with a generator seeded by seed. The same seed gives the same
// plan, so every (mesh, mode) of a run meets the same faults.
func Plan(s *scenarios.Scenario, seed uint64) ([]Action, error) {
	p := &planner{window: s.Load.Duration.D(), rng: newRand(seed)}
	p.pods = s.Topology.Pods()
	for i, f := range s.Faults {
		p.index = i
		if err := p.fault(f); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Key(), err)
		}
	}
	sort.SliceStable(p.out, func(i, j int) bool { return p.out[i].Start < p.out[j].Start })
	return p.out, nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

type planner struct {
	index  int // the fault being planned
	window time.Duration
	pods   []scenarios.Pod
	rng    *rand.Rand
	out    []Action
}

func (p *planner) fault(f scenarios.Fault) error {
	start := f.At.D()
	switch o := f.Object.(type) {
	case *chaosv1alpha1.Schedule:
		return p.schedule(f.Key(), start, &o.Spec)
	case *chaosv1alpha1.Workflow:
		_, err := p.workflow(f.Key(), start, &o.Spec)
		return err
	case chaosv1alpha1.GenericChaos:
		return p.add(f.Key(), "", start, o, 0, p.window)
	}
	return fmt.Errorf("%T is not a fault", f.Object)
}

// add appends an action of obj from start, lasting its duration (or
// limit, when set: a Workflow's deadline), cut at until (a parent step's
// deadline) and at the window's end.
func (p *planner) add(fault, step string, start time.Duration, obj chaosv1alpha1.GenericChaos, limit, until time.Duration) error {
	if len(p.out) >= maxActions {
		return fmt.Errorf("the faults make more than %d actions in the window", maxActions)
	}
	d, err := scenarios.ChaosDuration(obj)
	if err != nil {
		return err
	}
	if d < 0 { // to the end
		d = p.window - start
	}
	if limit > 0 && !oneShot(obj) {
		d = limit
	}
	end := min(start+d, until, p.window)
	d = max(end-start, 0)
	if d == 0 && !oneShot(obj) {
		return nil // cut to nothing by a deadline
	}
	a := Action{Index: p.index, Fault: fault, Step: step, Start: start, Duration: d, Object: obj}
	sel, target := selectors(obj)
	if a.Targets, err = p.pick(sel); err != nil {
		return fmt.Errorf("selector: %w", err)
	}
	if target != nil {
		if a.Peers, err = p.pick(target); err != nil {
			return fmt.Errorf("target: %w", err)
		}
	}
	p.out = append(p.out, a)
	return nil
}

// schedule adds the actions of each firing of a Schedule from start to
// the window's end. Cron times count from the window's start as if it
// began at midnight; a firing while the last one is still in force is
// skipped (concurrencyPolicy Forbid, the default) or added (Allow).
func (p *planner) schedule(fault string, start time.Duration, sp *chaosv1alpha1.ScheduleSpec) error {
	sched, err := chaosv1alpha1.StandardCronParser.Parse(sp.Schedule)
	if err != nil {
		return fmt.Errorf("schedule %q: %w", sp.Schedule, err)
	}
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	var busyUntil time.Duration = -1
	// (A schedule that never fires has a zero next time.)
	for n, t := 0, sched.Next(base.Add(start)); !t.IsZero() && t.Sub(base) < p.window; n, t = n+1, sched.Next(t) {
		at := t.Sub(base)
		if sp.ConcurrencyPolicy != chaosv1alpha1.AllowConcurrent && at < busyUntil {
			continue
		}
		obj, err := scenarios.EmbeddedChaos(&sp.EmbedChaos, string(sp.Type))
		if err != nil {
			return err
		}
		k := len(p.out)
		if err := p.add(fault, "firing-"+strconv.Itoa(n+1), at, obj, 0, p.window); err != nil {
			return err
		}
		if len(p.out) > k {
			busyUntil = p.out[k].End()
		}
	}
	return nil
}

// workflow adds the actions of a Workflow's entry from start and returns
// how long it lasts.
func (p *planner) workflow(fault string, start time.Duration, sp *chaosv1alpha1.WorkflowSpec) (time.Duration, error) {
	byName := map[string]*chaosv1alpha1.Template{}
	for i := range sp.Templates {
		byName[sp.Templates[i].Name] = &sp.Templates[i]
	}
	// until is the end its parents' deadlines allow (Chaos Mesh ends a
	// step's children when its deadline passes).
	var run func(name string, at, until time.Duration, depth int) (time.Duration, error)
	run = func(name string, at, until time.Duration, depth int) (time.Duration, error) {
		t, ok := byName[name]
		if !ok {
			return 0, fmt.Errorf("no template %q", name)
		}
		if depth > len(sp.Templates) {
			return 0, fmt.Errorf("template %q is part of a cycle", name)
		}
		var deadline time.Duration
		if t.Deadline != nil {
			d, err := time.ParseDuration(*t.Deadline)
			if err != nil {
				return 0, fmt.Errorf("template %q: deadline: %w", name, err)
			}
			deadline = d
			until = min(until, at+d)
		}
		switch t.Type {
		case chaosv1alpha1.TypeSuspend:
			return min(deadline, max(until-at, 0)), nil
		case chaosv1alpha1.TypeSerial, chaosv1alpha1.TypeParallel:
			var total time.Duration
			for _, ch := range t.Children {
				childAt := at
				if t.Type == chaosv1alpha1.TypeSerial {
					childAt = at + total
				}
				d, err := run(ch, childAt, until, depth+1)
				if err != nil {
					return 0, err
				}
				if t.Type == chaosv1alpha1.TypeSerial {
					total += d
				} else {
					total = max(total, d)
				}
			}
			// The deadline cut the children short (until).
			return min(total, max(until-at, 0)), nil
		}
		if t.EmbedChaos == nil {
			return 0, fmt.Errorf("template %q has no %s", name, t.Type)
		}
		obj, err := scenarios.EmbeddedChaos(t.EmbedChaos, string(t.Type))
		if err != nil {
			return 0, fmt.Errorf("template %q: %w", name, err)
		}
		n := len(p.out)
		if err := p.add(fault, name, at, obj, deadline, until); err != nil {
			return 0, fmt.Errorf("template %q: %w", name, err)
		}
		if len(p.out) == n {
			return 0, nil
		}
		return p.out[n].Duration, nil
	}
	return run(sp.Entry, start, p.window, 0)
}

// pick chooses workloads by a selector's labels and mode, as Chaos Mesh
// does: one, all, fixed N, fixed-percent P (floor(n*P/100)), and
// random-max-percent P (a random count from 0 to floor(n*P/100)).
func (p *planner) pick(ps *chaosv1alpha1.PodSelector) ([]string, error) {
	match := scenarios.SelectWorkloads(ps, p.pods)
	if len(match) == 0 {
		return nil, fmt.Errorf("selects no workload")
	}
	n := len(match)
	count := n
	switch ps.Mode {
	case chaosv1alpha1.OneMode:
		count = 1
	case chaosv1alpha1.AllMode:
	case chaosv1alpha1.FixedMode, chaosv1alpha1.FixedPercentMode, chaosv1alpha1.RandomMaxPercentMode:
		v, err := strconv.Atoi(ps.Value)
		if err != nil {
			return nil, fmt.Errorf("value %q: %w", ps.Value, err)
		}
		switch ps.Mode {
		case chaosv1alpha1.FixedMode:
			count = min(v, n)
		case chaosv1alpha1.FixedPercentMode:
			count = int(math.Floor(float64(n) * float64(v) / 100))
		default:
			count = p.rng.IntN(int(math.Floor(float64(n)*float64(v)/100)) + 1)
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", ps.Mode)
	}
	if count >= n {
		return match, nil
	}
	p.rng.Shuffle(n, func(i, j int) { match[i], match[j] = match[j], match[i] })
	out := match[:count]
	// In the topology's order, for stable reports.
	order := func(name string) int {
		return slices.IndexFunc(p.pods, func(pd scenarios.Pod) bool { return pd.Name == name })
	}
	slices.SortFunc(out, func(a, b string) int { return order(a) - order(b) })
	return out, nil
}

// selectors are an object's pod selector and, for a NetworkChaos, its
// target's.
func selectors(obj chaosv1alpha1.GenericChaos) (sel, target *chaosv1alpha1.PodSelector) {
	switch o := obj.(type) {
	case *chaosv1alpha1.PodChaos:
		return &o.Spec.PodSelector, nil
	case *chaosv1alpha1.NetworkChaos:
		return &o.Spec.PodSelector, o.Spec.Target
	case *chaosv1alpha1.HTTPChaos:
		return &o.Spec.PodSelector, nil
	case *chaosv1alpha1.StressChaos:
		return &o.Spec.PodSelector, nil
	}
	return &chaosv1alpha1.PodSelector{}, nil
}

// oneShot says an action has no length (pod-kill, container-kill).
func oneShot(obj chaosv1alpha1.GenericChaos) bool {
	o, ok := obj.(*chaosv1alpha1.PodChaos)
	return ok && o.IsOneShot()
}
