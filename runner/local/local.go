// Package local is the embedded local platform: every node is a network
// namespace joined to a per-run bridge by a veth pair (as root, with `ip`),
// or, where namespaces are not possible, its own 127.0.x.0/24 loopback
// address. Workloads and proxies are child processes of the meshbench binary.
//
// Everything it creates is named after the run id and recorded in a state
// file owned by the run's process, so that a later run can find and remove
// what a killed run left behind.
package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
)

// Network modes.
const (
	NetNS    = "netns"
	Loopback = "loopback"
	Auto     = "auto"
)

// DefaultSubnet is the private range node subnets (/24 each run) come from.
var DefaultSubnet = netip.MustParsePrefix("10.213.0.0/16")

// ErrInvalidOptions wraps errors in Options (as opposed to failures of the
// host), so that callers can report them as bad input.
var ErrInvalidOptions = errors.New("invalid platform options")

// Options configure the platform.
type Options struct {
	// RunID names every resource; 6 lowercase hex digits.
	RunID string
	// Network is Auto (the default), NetNS or Loopback.
	Network string
	// Subnet is the private range to take a /24 from (NetNS mode).
	Subnet netip.Prefix
	// StateDir holds the run state files; DefaultStateDir() when empty.
	StateDir string
	// Self is the meshbench binary to start workloads and proxies with.
	Self string
	// Proxy, when set, is meshbench-proxy, which runs the processes whose
	// Command is meshes.ProxyCommand (else Self runs them).
	Proxy string
	Log   runner.Logger
}

type platform struct {
	opts   Options
	ex     executor
	mode   string
	reason string
	st     *state

	mu    sync.Mutex
	procs []*process
	nodes map[string]meshes.Node
	down  bool

	// cgroups says components get cgroup v1 groups for accounting.
	cgroups bool
	seq     int
	// inbound are, per node, the ports the installed redirects send
	// elsewhere in the node (port -> port), for the interposers.
	inbound map[string]map[int]int
	// interposers and httpInterposers are the nodes' interposers in
	// place (see PrepareFaults).
	interposers, httpInterposers map[string]*interposer
}

var _ runner.Platform = (*platform)(nil)

// DefaultStateDir is /run/meshbench for root, a per-user temp dir otherwise.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/run/meshbench"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("meshbench-%d", os.Geteuid()))
}

// New chooses the network mode, removes what dead runs left behind, and
// returns the platform. Nothing of this run exists until Up.
func New(ctx context.Context, o Options) (runner.Platform, error) {
	if o.Subnet == (netip.Prefix{}) {
		o.Subnet = DefaultSubnet
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir()
	}
	if o.Log == nil {
		o.Log = nopLogger{}
	}
	if !validRunID(o.RunID) {
		return nil, fmt.Errorf("%w: run id %q: want 6 lowercase hex digits", ErrInvalidOptions, o.RunID)
	}
	if o.Subnet.Bits() > 16 || !o.Subnet.Addr().Is4() || !o.Subnet.Addr().IsPrivate() {
		return nil, fmt.Errorf("%w: --subnet %s: want a private IPv4 range of /16 or larger", ErrInvalidOptions, o.Subnet)
	}
	p := &platform{opts: o, ex: execRunner{}, inbound: map[string]map[int]int{},
		interposers: map[string]*interposer{}, httpInterposers: map[string]*interposer{}}
	mode, reason, err := chooseNetwork(o.Network)
	if err != nil {
		return nil, err
	}
	p.mode, p.reason = mode, reason
	p.cgroups = cgroupsV1()
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := Cleanup(ctx, o.StateDir, o.Log); err != nil {
		return nil, fmt.Errorf("remove leftovers of dead runs: %w", err)
	}
	return p, nil
}

// chooseNetwork picks namespaces when they are possible and says why not
// otherwise.
func chooseNetwork(want string) (mode, reason string, err error) {
	_, ipErr := exec.LookPath("ip")
	root := os.Geteuid() == 0
	switch want {
	case "", Auto:
		switch {
		case !root:
			return Loopback, "not running as root: network namespaces need root", nil
		case ipErr != nil:
			return Loopback, "the ip command (iproute2) was not found", nil
		}
		return NetNS, "running as root with iproute2", nil
	case NetNS:
		if !root || ipErr != nil {
			return "", "", fmt.Errorf("%w: --network netns needs root and the ip command (iproute2)", ErrInvalidOptions)
		}
		return NetNS, "requested with --network netns", nil
	case Loopback:
		return Loopback, "requested with --network loopback", nil
	}
	return "", "", fmt.Errorf("%w: --network %q: want auto, netns or loopback", ErrInvalidOptions, want)
}

func (p *platform) Describe() results.Platform {
	src := "/proc"
	if p.cgroups {
		src = "cgroup v1 (cpuacct, memory)"
	}
	return results.Platform{Name: "local", Network: p.mode, NetworkReason: p.reason, Transparent: p.transparent(), ResourceSource: src}
}

// Up creates the nodes. On failure it removes what it created.
func (p *platform) Up(ctx context.Context, names []string) (map[string]meshes.Node, error) {
	st, err := newState(p.opts.StateDir, p.opts.RunID, p.mode)
	if err != nil {
		return nil, err
	}
	p.st = st
	var nodes map[string]meshes.Node
	if p.mode == NetNS {
		nodes, err = p.upNetNS(ctx, names)
	} else {
		nodes, err = p.upLoopback(names)
	}
	if err != nil {
		dctx := context.WithoutCancel(ctx)
		return nil, errors.Join(err, p.Down(dctx))
	}
	p.mu.Lock()
	p.nodes = nodes
	p.mu.Unlock()
	return nodes, nil
}

func (p *platform) upLoopback(names []string) (map[string]meshes.Node, error) {
	base, err := p.st.claimOctets(len(names))
	if err != nil {
		return nil, err
	}
	nodes := map[string]meshes.Node{}
	for i, n := range names {
		a := netip.AddrFrom4([4]byte{127, 0, byte(base + i), 1})
		nodes[n] = meshes.Node{Name: n, Addr: a, Local: a}
	}
	return nodes, nil
}

// Down stops every process, then removes the network in reverse order of
// creation. Errors are collected; every step is attempted.
func (p *platform) Down(ctx context.Context) error {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		return nil
	}
	p.down = true
	procs := p.procs
	p.mu.Unlock()

	var errs []error
	runner.StopAll(ctx, procs, stopGrace)
	if p.cgroups {
		errs = append(errs, removeCgroups(p.opts.RunID))
	}
	if p.st != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		if err := removeRun(rctx, p.ex, p.st.record()); err != nil {
			// Keep the state file: the next run finds and removes the rest.
			return fmt.Errorf("remove the run's network (kept %s for the next run): %w", statePath(p.opts.StateDir, p.opts.RunID), err)
		}
		errs = append(errs, p.st.remove())
	}
	return errors.Join(errs...)
}

// Teardown bounds.
const (
	stopGrace     = runner.DefaultStopTimeout
	removeTimeout = 30 * time.Second
)

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}

func validRunID(id string) bool {
	if len(id) != 6 {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}
