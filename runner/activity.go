package runner

import (
	"context"
	"errors"
	"fmt"
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

// policyTimeline applies the scenario's policy changes at their offsets
// into the window and records in tr when each took effect at the control
// plane.
func (r *run) policyTimeline(dep *meshes.Deployment, tr *results.Trial) activity {
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
			tr.Events = append(tr.Events, results.WindowEvent{
				At: time.Since(windowStart).Seconds(), Kind: "policy",
				Detail: fmt.Sprintf("policy at %s: %d objects in force %v", at, len(objs), kinds)})
		}
		return nil
	}
}
