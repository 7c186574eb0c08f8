package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
)

// activity runs beside the load over its measured window: started when
// the window starts (windowStart is when the client began measuring), and
// stopped by ctx when the load ends. Its error fails the trial. Policy
// changes are one; faults and probes will be others.
type activity func(ctx context.Context, windowStart time.Time) error

// runActivities starts acts and returns a function that stops them and
// returns their errors.
func runActivities(ctx context.Context, acts []activity, windowStart time.Time) func() error {
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, len(acts))
	for _, a := range acts {
		go func() { errc <- a(ctx, windowStart) }()
	}
	return func() error {
		cancel()
		var errs []error
		for range acts {
			errs = append(errs, <-errc)
		}
		return errors.Join(errs...)
	}
}

// windowEvents collects the events activities record side by side.
type windowEvents struct {
	mu     sync.Mutex
	events []results.WindowEvent
}

// add records an event at seconds since the window's start.
func (w *windowEvents) add(at float64, kind, detail string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, results.WindowEvent{At: at, Kind: kind, Detail: detail})
}

// list is the events in time order; call it once the activities ended.
func (w *windowEvents) list() []results.WindowEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	sort.SliceStable(w.events, func(i, j int) bool { return w.events[i].At < w.events[j].At })
	return w.events
}

// policyTimeline applies the scenario's policy changes at their offsets
// into the window and records when each took effect at the control
// plane.
func (r *run) policyTimeline(dep *meshes.Deployment, ev *windowEvents) activity {
	s := r.Scenario
	return func(ctx context.Context, windowStart time.Time) error {
		for _, at := range s.PolicyChanges() {
			t := time.NewTimer(time.Until(windowStart.Add(at.D())))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			objs := s.PoliciesAt(at)
			if err := dep.ApplyPolicies(ctx, objs); err != nil {
				if ctx.Err() != nil {
					return nil // the window ended while the change was on its way
				}
				return fmt.Errorf("policy change at %s: %w", at, err)
			}
			var kinds []string
			for _, p := range objs {
				kinds = append(kinds, p.Key())
			}
			ev.add(time.Since(windowStart).Seconds(), "policy", fmt.Sprintf("policy at %s: %d objects in force %v", at, len(objs), kinds))
		}
		return nil
	}
}
