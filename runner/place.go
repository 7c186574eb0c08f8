package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
)

// Placement bounds: a unit without its own timeouts has the run's
// defaults (DefaultReadyTimeout, DefaultStopTimeout).
const (
	probeInterval = 50 * time.Millisecond
	undoTimeout   = 30 * time.Second
)

// Placer is what a platform gives PlaceUnit: a way to start one process
// of a pod on its node, and to put a unit's redirects in force.
type Placer interface {
	StartProcess(ctx context.Context, node string, spec ProcessSpec) (Process, error)
	// Redirect installs the redirects and returns their removal.
	Redirect(ctx context.Context, rs []meshes.Redirect) (undo func(context.Context) error, err error)
}

// PlaceUnit deploys u through p the way a kubelet runs a pod with an init
// container, in phases: every pod's application processes start together
// and answer their probes directly; then the redirects go in; then the
// other processes start one by one, each ready before the next. Probes
// run from the caller's host, which must reach every node. On error what
// was placed is removed.
func PlaceUnit(ctx context.Context, u Unit, p Placer) (_ Deployed, err error) {
	d := &placed{name: u.Name, grace: u.StopTimeout}
	if d.grace <= 0 {
		d.grace = DefaultStopTimeout
	}
	ready := u.ReadyTimeout
	if ready <= 0 {
		ready = DefaultReadyTimeout
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Stop(context.WithoutCancel(ctx)))
		}
	}()
	start := func(node string, spec ProcessSpec) (Process, error) {
		pr, err := p.StartProcess(ctx, node, spec)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.procs = append(d.procs, pr)
		d.mu.Unlock()
		return pr, nil
	}
	var apps []Process
	var probes []meshes.Probe
	var redirects []meshes.Redirect
	for _, pod := range u.Pods {
		redirects = append(redirects, pod.Redirects...)
		for _, spec := range pod.Processes {
			if spec.Class != results.ClassApp {
				continue
			}
			pr, err := start(pod.Node, spec)
			if err != nil {
				return nil, err
			}
			apps, probes = append(apps, pr), append(probes, spec.Ready)
		}
	}
	for i, pr := range apps {
		if err := WaitReady(ctx, pr, probes[i], ready); err != nil {
			return nil, err
		}
	}
	for _, sc := range u.Services {
		if err := waitProbe(ctx, sc.Probe, ready, nil); err != nil {
			return nil, fmt.Errorf("service %s's own address does not reach its pods, which answer: %w", sc.Service, err)
		}
	}
	if len(redirects) > 0 {
		undo, err := p.Redirect(ctx, redirects)
		if err != nil {
			return nil, fmt.Errorf("install interception: %w", err)
		}
		d.mu.Lock()
		d.undo = undo
		d.mu.Unlock()
	}
	for _, pod := range u.Pods {
		for _, spec := range pod.Processes {
			if spec.Class == results.ClassApp {
				continue
			}
			pr, err := start(pod.Node, spec)
			if err != nil {
				return nil, err
			}
			if err := WaitReady(ctx, pr, spec.Ready, ready); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// placed is a unit PlaceUnit deployed: its processes in start order and
// the removal of its redirects.
type placed struct {
	name  string
	grace time.Duration
	procs []Process

	mu      sync.Mutex
	undo    func(context.Context) error
	stopped bool
	stopErr error
}

func (d *placed) Processes() []Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Process(nil), d.procs...)
}

// Stop stops the processes last first, each with its own grace period
// (one slow process does not cost the others theirs, nor their final
// counts), then removes the redirects: no process runs without the rules
// it was started behind.
func (d *placed) Stop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return d.stopErr
	}
	d.stopped = true
	for i := len(d.procs) - 1; i >= 0; i-- {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.grace)
		_ = d.procs[i].Stop(sctx)
		cancel()
	}
	if d.undo != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		if err := d.undo(uctx); err != nil {
			d.stopErr = fmt.Errorf("remove %s's interception: %w", d.name, err)
		}
	}
	return d.stopErr
}

// WaitReady polls probe until it succeeds, the process exits, or timeout
// passes.
func WaitReady(ctx context.Context, pr Process, probe meshes.Probe, timeout time.Duration) error {
	err := waitProbe(ctx, probe, timeout, pr.Done())
	if errors.Is(err, errExited) {
		return fmt.Errorf("%s exited before it was ready: %v (see its log in the results directory)", pr.Name(), pr.Err())
	}
	var nr notReady
	if errors.As(err, &nr) {
		return fmt.Errorf("%s %w", pr.Name(), err)
	}
	return err
}

// errExited is waitProbe's error when done closed first.
var errExited = errors.New("exited")

// notReady is waitProbe's error when its time is up: the probe's last
// failure.
type notReady struct {
	after time.Duration
	last  error
}

func (e notReady) Error() string { return fmt.Sprintf("not ready after %s: %v", e.after, e.last) }

// waitProbe polls probe until it succeeds, done closes (errExited), or
// timeout passes (notReady).
func waitProbe(ctx context.Context, probe meshes.Probe, timeout time.Duration, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		if last = Check(ctx, client, probe); last == nil {
			return nil
		}
		select {
		case <-done:
			return errExited
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return notReady{after: timeout, last: last}
			}
			return ctx.Err()
		case <-time.After(probeInterval):
		}
	}
}

// Check runs a probe once from this host.
func Check(ctx context.Context, client *http.Client, probe meshes.Probe) error {
	if probe.TCP != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", probe.TCP)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	if probe.HTTPGet == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe.HTTPGet, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", probe.HTTPGet, resp.StatusCode)
	}
	return nil
}

// StopAll stops processes together, each with its own grace period: one
// that ignores SIGTERM must not use up the time the others, or the
// platform's removal of its resources, need.
func StopAll[P Process](ctx context.Context, procs []P, grace time.Duration) {
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
			defer cancel()
			_ = pr.Stop(sctx)
		}()
	}
	wg.Wait()
}
