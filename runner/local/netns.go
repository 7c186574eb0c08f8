package local

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/meshbench/meshbench/meshes"
)

// Resource names. Linux limits interface names to 15 bytes: "mb" + 6-digit
// run id + role letter + node index fits.
func nsName(runID, node string) string { return "mb-" + runID + "-" + node }
func bridgeName(runID string) string   { return "mb-" + runID }
func vethHost(runID string, i int) string {
	return fmt.Sprintf("mb%sh%d", runID, i)
}
func vethNode(runID string, i int) string { return fmt.Sprintf("mb%sn%d", runID, i) }
func ruleComment(runID string) string     { return "meshbench:" + runID }

// claimSubnet reserves a /24 of the platform's range that no live run uses
// and that no host interface already has, and records it.
func (p *platform) claimSubnet(ctx context.Context) (netip.Prefix, error) {
	unlock, err := LockDir(p.opts.StateDir)
	if err != nil {
		return netip.Prefix{}, err
	}
	defer unlock()
	used := map[int]bool{}
	for _, r := range liveRecords(p.opts.StateDir) {
		if r.RunID != p.opts.RunID && r.Network == NetNS && r.Octet >= 0 {
			used[r.Octet] = true
		}
	}
	hostAddrs, err := p.ex.Run(ctx, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	base := p.opts.Subnet.Addr().As4()
	for o := 1; o < 255; o++ {
		if used[o] {
			continue
		}
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(o), 0}), 24)
		if strings.Contains(hostAddrs, fmt.Sprintf(" %d.%d.%d.", base[0], base[1], o)) {
			continue
		}
		return pfx, p.st.update(func(r *record) { r.Octet = o })
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in %s", p.opts.Subnet)
}

func hostAddr(pfx netip.Prefix, i int) netip.Addr {
	a := pfx.Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

// upNetNS creates the bridge (with the .1 address, so the runner can reach
// every node), then one namespace per node with a veth pair whose node end
// is eth0 with address .2, .3, ...
func (p *platform) upNetNS(ctx context.Context, names []string) (map[string]meshes.Node, error) {
	id := p.opts.RunID
	pfx, err := p.claimSubnet(ctx)
	if err != nil {
		return nil, err
	}
	br := bridgeName(id)
	if err := p.st.update(func(r *record) { r.Bridge = br }); err != nil {
		return nil, err
	}
	gw := netip.PrefixFrom(hostAddr(pfx, 1), 24)
	if err := p.ip(ctx,
		[]string{"link", "add", br, "type", "bridge"},
		[]string{"addr", "add", gw.String(), "dev", br},
		[]string{"link", "set", br, "up"},
	); err != nil {
		return nil, err
	}
	if err := p.allowForwarding(ctx, br); err != nil {
		return nil, err
	}
	nodes := map[string]meshes.Node{}
	for i, name := range names {
		ns, hv, nv := nsName(id, name), vethHost(id, i), vethNode(id, i)
		if err := p.st.update(func(r *record) {
			r.Namespaces = append(r.Namespaces, ns)
			r.Links = append(r.Links, hv)
		}); err != nil {
			return nil, err
		}
		addr := hostAddr(pfx, i+2)
		if err := p.ip(ctx,
			[]string{"netns", "add", ns},
			[]string{"link", "add", hv, "type", "veth", "peer", "name", nv, "netns", ns},
			[]string{"link", "set", hv, "master", br, "up"},
			[]string{"-n", ns, "link", "set", nv, "name", "eth0"},
			[]string{"-n", ns, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		); err != nil {
			return nil, err
		}
		nodes[name] = meshes.Node{Name: name, Addr: addr, Local: netip.MustParseAddr("127.0.0.1")}
	}
	return nodes, nil
}

func (p *platform) ip(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		if _, err := p.ex.Run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// allowForwarding accepts traffic between the run's bridge ports in the
// FORWARD chain. Where br_netfilter passes bridged frames through iptables
// and the chain's policy is DROP (as Docker sets it), nodes could not reach
// each other without it. The rule carries the run id in a comment.
func (p *platform) allowForwarding(ctx context.Context, br string) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		if _, statErr := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); statErr == nil {
			p.opts.Log.Logf("warning: iptables not found; if the FORWARD policy drops bridged traffic, nodes cannot reach each other")
		}
		return nil
	}
	rule := []string{"FORWARD", "-i", br, "-o", br, "-j", "ACCEPT", "-m", "comment", "--comment", ruleComment(p.opts.RunID)}
	if err := p.st.update(func(r *record) { r.Rules = append(r.Rules, rule) }); err != nil {
		return err
	}
	_, err := p.ex.Run(ctx, "iptables", append([]string{"-w", "5", "-I"}, rule...)...)
	return err
}
