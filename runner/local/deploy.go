package local

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
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
)

// Default unit bounds, when the unit does not set its own.
const (
	defaultReadyTimeout = 30 * time.Second
	probeInterval       = 50 * time.Millisecond
)

// unit is a deployed runner.Unit: its processes in start order and the
// removal of its redirects.
type unit struct {
	name  string
	grace time.Duration
	procs []*process

	mu      sync.Mutex
	undo    func(context.Context) error // the redirects' removal
	stopped bool
	stopErr error
}

var _ runner.Deployed = (*unit)(nil)

// Deploy places a unit the way a kubelet runs a pod with an init
// container, in phases: every pod's application processes start together
// and answer their probes directly; then the redirects go in; then the
// other processes start one by one, each ready before the next. On error
// what was placed is removed.
func (p *platform) Deploy(ctx context.Context, u runner.Unit) (_ runner.Deployed, err error) {
	d := &unit{name: u.Name, grace: u.StopTimeout}
	if d.grace <= 0 {
		d.grace = stopGrace
	}
	ready := u.ReadyTimeout
	if ready <= 0 {
		ready = defaultReadyTimeout
	}
	var redirects []meshes.Redirect
	for _, pod := range u.Pods {
		redirects = append(redirects, pod.Redirects...)
	}
	if len(redirects) > 0 && !p.transparent() {
		return nil, fmt.Errorf("deploy %s: transparent interception needs the netns network and iptables (network is %s)", u.Name, p.mode)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Stop(context.WithoutCancel(ctx)))
		}
	}()
	start := func(node string, spec runner.ProcessSpec) (*process, error) {
		pr, err := p.start(node, spec)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.procs = append(d.procs, pr)
		d.mu.Unlock()
		return pr, nil
	}
	var apps []*process
	var probes []meshes.Probe
	for _, pod := range u.Pods {
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
		if err := waitReady(ctx, pr, probes[i], ready); err != nil {
			return nil, err
		}
	}
	if len(redirects) > 0 {
		undo, err := p.intercept(ctx, redirects)
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
			if err := waitReady(ctx, pr, spec.Ready, ready); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func (d *unit) Processes() []runner.Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]runner.Process, len(d.procs))
	for i, pr := range d.procs {
		out[i] = pr
	}
	return out
}

// Stop stops the processes last first, each with its own grace period
// (one slow process does not cost the others theirs, nor their final
// counts), then removes the redirects: no process runs without the rules
// it was started behind.
func (d *unit) Stop(ctx context.Context) error {
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
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		if err := d.undo(uctx); err != nil {
			d.stopErr = fmt.Errorf("remove %s's interception: %w", d.name, err)
		}
	}
	return d.stopErr
}

// waitReady polls probe until it succeeds, the process exits, or timeout
// passes.
func waitReady(ctx context.Context, pr *process, probe meshes.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		if last = check(ctx, client, probe); last == nil {
			return nil
		}
		select {
		case <-pr.Done():
			return fmt.Errorf("%s exited before it was ready: %v (see its log in the results directory)", pr.name, pr.Err())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready after %s: %v", pr.name, timeout, last)
			}
			return ctx.Err()
		case <-time.After(probeInterval):
		}
	}
}

// check runs a probe once from the host, which reaches every node.
func check(ctx context.Context, client *http.Client, probe meshes.Probe) error {
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
