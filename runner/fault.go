package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner/chaos"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// FaultInjector is implemented by platforms that execute faults.
type FaultInjector interface {
	// CanInject returns why the platform cannot execute an action, or nil.
	CanInject(a chaos.Action) error
	// Inject puts an action in force on its pods and returns how it did
	// and how to recover (nothing to recover for a one-shot action).
	Inject(ctx context.Context, in Injection) (Injected, error)
}

// Injection is an action with its workloads resolved on the platform.
type Injection struct {
	Action chaos.Action
	// Pods are the action's targets.
	Pods []FaultPod
	// Peers are the nodes on the other side of a network fault: its
	// target's workloads', or, without a target, every other workload's.
	Peers []string
}

// FaultPod is a workload as a fault sees it: its node and the processes
// of its pod (its application and, in sidecar mode, its sidecar; a
// per-node proxy is the node's, not the pod's).
type FaultPod struct {
	Workload, Node string
	Processes      []Process
}

// Injected is an action in force.
type Injected struct {
	// Executor is what carries it out ("iptables", "SIGSTOP/SIGCONT").
	Executor string
	// Recover ends it; nil when there is nothing to end.
	Recover func(context.Context) error
	// Note says what the executor could not do as asked (a pod with no
	// process to stop), for the results.
	Note string
	// Outcome, when set, says after Recover what the fault did (the
	// requests it matched), added to the note.
	Outcome func() string
}

// FaultPreparer is a FaultInjector some of whose actions need something
// in the data path from before the load starts (the local platform's
// interposer, through which a delay acts on connections already open).
// PrepareFaults puts it in place for the trial's actions, with no effect
// of its own until an action is injected, and returns its removal; it
// says what it put in place, for the trial's events.
type FaultPreparer interface {
	PrepareFaults(ctx context.Context, ins []Injection) (undo func(context.Context) error, note string, err error)
}

// recoverTimeout bounds a fault's recovery after the window.
const recoverTimeout = 30 * time.Second

// planFaults plans the scenario's faults and checks, before anything
// starts, that the platform executes every action: its refusals are
// errors at the faults' lines.
func (r *run) planFaults() error {
	s := r.Scenario
	if len(s.Faults) == 0 {
		return nil
	}
	if s.Seed == 0 {
		s.Seed = rand.Uint64() // recorded in the manifest's scenario
	}
	acts, err := chaos.Plan(s, s.Seed)
	if err != nil {
		return s.FieldError("faults", "%v", err)
	}
	inj, ok := r.Platform.(FaultInjector)
	var errs scenarios.ErrorList
	said := map[string]bool{}
	for _, a := range acts {
		path := fmt.Sprintf("faults[%d]", a.Index)
		var why error
		if !ok {
			why = fmt.Errorf("the %s platform does not execute faults", r.Platform.Describe().Name)
		} else {
			why = inj.CanInject(a)
		}
		if why != nil && !said[path+why.Error()] {
			said[path+why.Error()] = true
			errs = append(errs, s.FieldError(path, "%s: %v", a.Verb(), why))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	r.faults = acts
	return nil
}

// faultTimeline puts the planned faults in force at their offsets into
// the window and recovers each its duration after it was put in force
// (Chaos Mesh counts a duration from the injection), and every one still
// in force when the window ends or the run is interrupted. It records
// each in tr.Faults (which nothing else touches until the activities
// ended) and its start and end in ev. A fault that cannot be put in force
// or recovered fails the trial.
func (r *run) faultTimeline(d *deployment, mode scenarios.Mode, tr *results.Trial, ev *windowEvents) activity {
	inj := r.Platform.(FaultInjector)
	return func(ctx context.Context, windowStart time.Time) (err error) {
		type active struct {
			rec     int           // index in tr.Faults
			end     time.Duration // from the window's start
			fn      func(context.Context) error
			outcome func() string
		}
		var on []active
		since := func() float64 { return time.Since(windowStart).Seconds() }
		// end recovers a, whatever ctx the window is in: a recovery cut
		// short would leave the fault in force.
		end := func(a active) error {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
			defer cancel()
			rerr := a.fn(rctx)
			f := &tr.Faults[a.rec]
			f.End = since()
			if a.outcome != nil {
				if o := a.outcome(); o != "" {
					f.Note = strings.TrimPrefix(f.Note+"; "+o, "; ")
				}
			}
			ev.add(f.End, "fault", "recovered "+f.Name)
			if rerr != nil {
				f.Error = "recover: " + rerr.Error()
				return fmt.Errorf("recover %s: %w", f.Name, rerr)
			}
			return nil
		}
		defer func() {
			for _, a := range on {
				err = errors.Join(err, end(a))
			}
		}()
		next := 0
		for next < len(r.faults) || len(on) > 0 {
			// The next thing to do: the earliest end of an action in
			// force, or the next action's start.
			at, starting := time.Duration(1<<62), false
			slices.SortFunc(on, func(a, b active) int { return cmp.Compare(a.end, b.end) })
			if len(on) > 0 {
				at = on[0].end
			}
			if next < len(r.faults) && r.faults[next].Start < at {
				at, starting = r.faults[next].Start, true
			}
			t := time.NewTimer(time.Until(windowStart.Add(at)))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil // the window is over: the deferred recovery
			case <-t.C:
			}
			if !starting {
				a := on[0]
				on = on[1:]
				if err := end(a); err != nil {
					return err
				}
				continue
			}
			a := r.faults[next]
			next++
			in, peers := r.injection(d, mode, a)
			tr.Faults = append(tr.Faults, results.Fault{Name: a.Name(), Action: a.Verb(), Targets: a.Targets, Peers: peers})
			f := &tr.Faults[len(tr.Faults)-1]
			detail := fmt.Sprintf("%s: %s on %s", a.Name(), a.Verb(), strings.Join(a.Targets, ", "))
			if len(peers) > 0 {
				detail += " (peers " + strings.Join(peers, ", ") + ")"
			}
			if len(a.Targets) == 0 {
				f.Start, f.End = since(), since()
				f.Note = "the selector's mode picked no workload"
				ev.add(f.Start, "fault", a.Name()+": "+f.Note)
				continue
			}
			got, ierr := inj.Inject(ctx, in)
			began := time.Now()
			f.Start, f.Executor, f.Note = since(), got.Executor, got.Note
			if got.Note != "" {
				detail += " (" + got.Note + ")"
			}
			ev.add(f.Start, "fault", detail+" by "+got.Executor)
			if ierr != nil {
				f.Error = ierr.Error()
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("fault %s: %w", a.Name(), ierr)
			}
			if got.Recover == nil {
				f.End = f.Start
				continue
			}
			on = append(on, active{rec: len(tr.Faults) - 1, end: began.Sub(windowStart) + a.Duration, fn: got.Recover, outcome: got.Outcome})
		}
		return nil
	}
}

// prepareFaults puts in place what the platform needs for the trial's
// faults before the load (see FaultPreparer) and returns its removal,
// which is safe to call more than once.
func (r *run) prepareFaults(ctx context.Context, d *deployment, mode scenarios.Mode, ev *windowEvents) (func(), error) {
	fp, ok := r.Platform.(FaultPreparer)
	if !ok {
		return func() {}, nil
	}
	var ins []Injection
	for _, a := range r.faults {
		in, _ := r.injection(d, mode, a)
		ins = append(ins, in)
	}
	undo, note, err := fp.PrepareFaults(ctx, ins)
	if err != nil {
		return nil, fmt.Errorf("prepare faults: %w", err)
	}
	if note != "" {
		ev.add(0, "fault", note)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if undo == nil {
				return
			}
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
			defer cancel()
			if err := undo(uctx); err != nil {
				r.Log.Logf("remove what the faults needed: %v", err)
			}
		})
	}, nil
}

// injection resolves an action's workloads to the deployment's pods; for
// a network fault it returns the peer workloads too.
func (r *run) injection(d *deployment, mode scenarios.Mode, a chaos.Action) (Injection, []string) {
	in := Injection{Action: a}
	for _, w := range a.Targets {
		node := r.nodes[w].Name
		pod := FaultPod{Workload: w, Node: node}
		for _, st := range d.procs {
			if st.comp.Node != node {
				continue
			}
			if st.comp.Class == results.ClassApp && st.comp.Name == w || mode == scenarios.Sidecar && st.comp.Class == results.ClassProxy {
				pod.Processes = append(pod.Processes, st.proc)
			}
		}
		in.Pods = append(in.Pods, pod)
	}
	// Peers: a network fault's target, or, for a partition without one,
	// every other workload (other network faults without a target act on
	// all of the pods' traffic).
	nc, network := a.Object.(*chaosv1alpha1.NetworkChaos)
	if !network || nc.Spec.Target == nil && nc.Spec.Action != chaosv1alpha1.PartitionAction {
		return in, nil
	}
	peers := a.Peers
	if len(peers) == 0 {
		for _, w := range r.Scenario.Topology.Workloads() {
			if !slices.Contains(a.Targets, w) {
				peers = append(peers, w)
			}
		}
	}
	for _, w := range peers {
		in.Peers = append(in.Peers, r.nodes[w].Name)
	}
	return in, peers
}
