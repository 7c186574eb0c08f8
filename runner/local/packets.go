package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner"
)

// Executors of the packet faults that netem would carry out, done here
// with what this kernel has.
const (
	execDuplicate = "iptables TEE (each drawn packet sent twice)"
	execHTB       = "tc htb class, packets classified by iptables CLASSIFY"
)

// flow is one direction between two nodes where a packet fault acts:
// the packets from sends to to's address. Chaos Mesh puts netem on the
// selected pods' egress toward the target (direction to), on the
// target's egress toward the selected pods (from), or both.
type flow struct {
	from, to         string
	fromAddr, toAddr netip.Addr
}

// flows are where a packet fault acts, by direction. Without a target
// (only direction to: Chaos Mesh refuses the others), each pod's packets
// to every other node.
func (p *platform) flows(in runner.Injection, dir chaosv1alpha1.Direction, hasTarget bool) ([]flow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pods []string
	for _, pod := range in.Pods {
		if !slices.Contains(pods, pod.Node) {
			pods = append(pods, pod.Node)
		}
	}
	var out []flow
	add := func(from, to []string) error {
		if !hasTarget {
			to = slices.Sorted(maps.Keys(p.nodes))
		}
		for _, src := range from {
			for _, dst := range to {
				a, ok := p.nodes[src]
				b, ok2 := p.nodes[dst]
				if !ok || !ok2 {
					return fmt.Errorf("no node %s or %s", src, dst)
				}
				f := flow{from: src, to: dst, fromAddr: a.Addr, toAddr: b.Addr}
				if src != dst && !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
		return nil
	}
	if dir == chaosv1alpha1.To || dir == chaosv1alpha1.Both || dir == "" {
		if err := add(pods, in.Peers); err != nil {
			return nil, err
		}
	}
	if hasTarget && (dir == chaosv1alpha1.From || dir == chaosv1alpha1.Both) {
		if err := add(in.Peers, pods); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// leaving is a rule on f's packets as they leave f.from, at the head of
// the mangle table's POSTROUTING chain (before the nat table's, so a
// redirected connection's answers are not yet translated back).
func (p *platform) leaving(f flow, rest ...string) nsRule {
	return nsRule{ns: nsName(p.opts.RunID, f.from), table: "mangle",
		rule: slices.Concat([]string{"POSTROUTING", "-o", "eth0", "-d", f.toAddr.String()}, rest)}
}

// arriving is a rule on f's packets as they arrive at f.to, in the
// mangle table's PREROUTING chain (after conntrack, before nat).
func (p *platform) arriving(f flow, rest ...string) nsRule {
	return nsRule{ns: nsName(p.opts.RunID, f.to), table: "mangle",
		rule: slices.Concat([]string{"PREROUTING", "-i", "eth0", "-s", f.fromAddr.String()}, rest)}
}

// commented is the match naming a fault's rules, so that their counters
// can be read (see counted).
func commented(comment string) []string {
	return []string{"-m", "comment", "--comment", comment}
}

// counted sums the packet counters of the rules carrying each comment,
// in order, in the rules' tables of the rules' namespaces: one listing of
// each, so that the counts are of one moment.
func (p *platform) counted(ctx context.Context, rules []nsRule, comments ...string) ([]uint64, error) {
	n := make([]uint64, len(comments))
	var seen []string
	for _, r := range rules {
		if slices.Contains(seen, r.ns+" "+r.table) {
			continue
		}
		seen = append(seen, r.ns+" "+r.table)
		out, err := p.ex.Run(ctx, "ip", "netns", "exec", r.ns, "iptables", "-w", "5", "-t", r.table, "-L", "-v", "-x", "-n")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			for i, comment := range comments {
				if len(f) == 0 || !strings.Contains(line, "/* "+comment+" */") {
					continue
				}
				c, err := strconv.ParseUint(f[0], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: iptables counters: %q", r.ns, line)
				}
				n[i] += c
			}
		}
	}
	return n, nil
}

// packetComment names one injection's rules.
func packetComment(runID string, in runner.Injection) string {
	return runner.FaultComment(runID) + ":" + in.Action.Name()
}

// duplicate sends each packet of the flows a second time with the
// object's probability, as netem's duplicate does: iptables' TEE clones
// it to its destination, so the receiver gets it twice. The clone is
// untracked, so it must be made where the connection's packets are not
// translated: a connection's own packets as they leave its opener, its
// answers as they arrive back there (an answer leaving a redirected
// connection's server still carries the redirect's port until the nat
// table's POSTROUTING, after every place a rule can clone it, and its
// receiver would reset the connection the clone does not belong to).
// An answer on a connection its opener translated (a kube-proxy-style
// Service balancing, in OUTPUT) is translated back only in nat INPUT,
// after the receiver's clone: those answers are not duplicated. The
// outcome says how many packets were, and how many D-SACKs the
// receivers' namespaces sent over the fault (any duplicate data segment
// counts, most of them the clones).
func (p *platform) duplicate(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: execDuplicate}
	pct, note, err := runner.PacketFault(spec)
	got.Note = note
	if err != nil {
		return got, err
	}
	flows, err := p.flows(in, spec.Direction, spec.Target != nil)
	if err != nil {
		return got, err
	}
	// The receivers' kernels answer a duplicated data segment with a
	// D-SACK (RFC 2883): their count shows the clones arrived.
	receivers := p.flowNamespaces(flows, func(f flow) string { return f.to })
	before, err := p.dsacks(ctx, receivers)
	if err != nil {
		return got, err
	}
	got, err = p.sampled(ctx, in, flows, got, pct, "duplicated", func(f flow, match []string) []nsRule {
		tee := []string{"-j", "TEE", "--gateway", f.toAddr.String()}
		return []nsRule{
			p.leaving(f, slices.Concat([]string{"-m", "conntrack", "--ctdir", "ORIGINAL"}, match, tee)...),
			p.arriving(f, slices.Concat([]string{"-m", "conntrack", "--ctdir", "REPLY", "!", "--ctstate", "DNAT"}, match, tee)...),
		}
	})
	if err != nil {
		return got, err
	}
	recover, outcome := got.Recover, got.Outcome
	var answered string
	got.Recover = func(ctx context.Context) error {
		after, err := p.dsacks(ctx, receivers)
		if err == nil {
			answered = fmt.Sprintf("; the receivers sent %d D-SACKs (duplicate segments they got)", after-before)
		}
		return errors.Join(err, recover(ctx))
	}
	got.Outcome = func() string { return strings.TrimPrefix(outcome()+answered, "; ") }
	return got, nil
}

// dsacks sums the D-SACKs the namespaces' TCP sent (TcpExt
// TCPDSACKOldSent and TCPDSACKOfoSent in /proc/net/netstat).
func (p *platform) dsacks(ctx context.Context, namespaces []string) (uint64, error) {
	var n uint64
	for _, ns := range namespaces {
		out, err := p.ex.Run(ctx, "ip", "netns", "exec", ns, "cat", "/proc/net/netstat")
		if err != nil {
			return 0, err
		}
		var names []string
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "TcpExt:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, v := range f {
				if i < len(names) && (names[i] == "TCPDSACKOldSent" || names[i] == "TCPDSACKOfoSent") {
					c, err := strconv.ParseUint(v, 10, 64)
					if err != nil {
						return 0, fmt.Errorf("%s: /proc/net/netstat: %s %q", ns, names[i], v)
					}
					n += c
				}
			}
		}
		if names == nil {
			return 0, fmt.Errorf("%s: /proc/net/netstat has no TcpExt counters", ns)
		}
	}
	return n, nil
}

// corrupt drops each packet of the flows with the object's probability:
// netem flips a bit of it, its checksum then fails at the receiver,
// which discards it; TCP retransmits it either way.
func (p *platform) corrupt(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: runner.ExecCorrupt}
	pct, note, err := runner.PacketFault(spec)
	got.Note = note
	if err != nil {
		return got, err
	}
	flows, err := p.flows(in, spec.Direction, spec.Target != nil)
	if err != nil {
		return got, err
	}
	return p.sampled(ctx, in, flows, got, pct, "corrupted (dropped)", func(f flow, match []string) []nsRule {
		return []nsRule{p.leaving(f, append(match, "-j", "DROP")...)}
	})
}

// sampled puts the rules of each of the injection's flows in force, given
// the match drawing a packet with probability pct% (and naming the
// fault), and counts the packets they took.
func (p *platform) sampled(ctx context.Context, in runner.Injection, flows []flow, got runner.Injected, pct float64, did string, rules func(f flow, match []string) []nsRule) (runner.Injected, error) {
	comment := packetComment(p.opts.RunID, in)
	match := append(runner.Sample(pct), commented(comment)...)
	var all []nsRule
	for _, f := range flows {
		all = append(all, rules(f, slices.Clone(match))...)
	}
	undo, err := p.applyRules(ctx, all, true)
	if err != nil {
		return got, err
	}
	var outcome string
	got.Recover = func(ctx context.Context) error {
		n, err := p.counted(ctx, all, comment)
		if err == nil {
			outcome = fmt.Sprintf("%d packets %s", n[0], did)
		}
		return errors.Join(err, undo(ctx))
	}
	got.Outcome = func() string { return outcome }
	return got, nil
}

// flowNamespaces are the namespaces of one side of the flows (side
// gives its node), each once, in the flows' order.
func (p *platform) flowNamespaces(flows []flow, side func(flow) string) []string {
	var out []string
	for _, f := range flows {
		if ns := nsName(p.opts.RunID, side(f)); !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// bandwidthTo limits the flows of a fault with a target (in any
// direction): an htb qdisc on each sender's interface whose one class
// has the object's rate and burst, and iptables CLASSIFY rules sending
// the flows' packets into it
// (htb reads the class from the packet's priority, so no tc filter is
// needed); the rest passes unshaped. The limit is the class's total, as
// tbf's is the interface's. A bfifo of the object's limit (bytes) queues
// it.
func (p *platform) bandwidthTo(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: execHTB}
	b := spec.Bandwidth
	if b == nil {
		return got, fmt.Errorf("no bandwidth given")
	}
	if b.Peakrate != nil && *b.Peakrate > 0 {
		got.Note = "peakrate not applied: an htb class has a rate and a ceiling, no peak bucket"
	}
	flows, err := p.flows(in, spec.Direction, true)
	if err != nil {
		return got, err
	}
	comment := packetComment(p.opts.RunID, in)
	var classify []nsRule
	for _, f := range flows {
		classify = append(classify, p.leaving(f, append(commented(comment), "-j", "CLASSIFY", "--set-class", "1:1")...))
	}
	senders := p.flowNamespaces(flows, func(f flow) string { return f.from })
	rate := strings.Join(strings.Fields(b.Rate), "")
	var done []string
	undo := func(ctx context.Context) error { return p.delRootQdiscs(ctx, done) }
	for _, ns := range senders {
		tc := func(args ...string) error {
			_, err := p.ex.Run(ctx, "ip", append([]string{"netns", "exec", ns, "tc"}, args...)...)
			return err
		}
		// default 0: what no rule classifies is sent at once.
		if err := tc("qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "0"); err != nil {
			return got, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
		done = append(done, ns)
		err := tc("class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate,
			"burst", strconv.FormatUint(uint64(b.Buffer), 10))
		if err == nil {
			err = tc("qdisc", "add", "dev", "eth0", "parent", "1:1", "bfifo", "limit", strconv.FormatUint(uint64(b.Limit), 10))
		}
		if err != nil {
			return got, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
	}
	unclassify, err := p.applyRules(ctx, classify, true)
	if err != nil {
		return got, errors.Join(err, undo(context.WithoutCancel(ctx)))
	}
	got.Recover = func(ctx context.Context) error { return errors.Join(unclassify(ctx), undo(ctx)) }
	return got, nil
}
