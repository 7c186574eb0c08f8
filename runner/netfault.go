package runner

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

// Executors of the packet faults, as results name them.
const (
	// ExecIPTables is the executor of a partition: filter rules in the
	// pods' network namespaces.
	ExecIPTables = "iptables"
	// ExecLoss drops each packet with the loss's probability (this
	// kernel has no netem).
	ExecLoss = "iptables statistic (random drop)"
	// ExecCorrupt drops each packet with the corruption's probability:
	// what its receiver does with a packet whose checksum fails.
	ExecCorrupt = "iptables statistic (random drop: what the receiver does with a corrupted packet)"
	// ExecTBF limits a pod's egress with a token bucket filter.
	ExecTBF = "tc tbf"
)

// TBFArgs are tc's arguments of a token bucket filter for a bandwidth
// fault, as Chaos Mesh's bandwidth action sets it: rate, burst (buffer),
// queue limit, peak rate and its bucket as the object gives them (tc
// reads the rate's units as Chaos Mesh documents them: bps is bytes per
// second).
func TBFArgs(b *chaosv1alpha1.BandwidthSpec) []string {
	// The rate as one word ("10 kbps" passes Chaos Mesh's check).
	rate := strings.Join(strings.Fields(b.Rate), "")
	args := []string{"tbf", "rate", rate, "burst", strconv.FormatUint(uint64(b.Buffer), 10), "limit", strconv.FormatUint(uint64(b.Limit), 10)}
	// Chaos Mesh sets a peak rate (bytes per second) only with its
	// bucket's size; tc wants both too.
	if b.Peakrate != nil && *b.Peakrate > 0 && b.Minburst != nil && *b.Minburst > 0 {
		args = append(args, "peakrate", strconv.FormatUint(*b.Peakrate, 10)+"bps", "mtu", strconv.FormatUint(uint64(*b.Minburst), 10))
	}
	return args
}

// Percent reads a Chaos Mesh percentage ("10", "0.5") of what.
func Percent(what, s string) (float64, error) {
	pct, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(pct >= 0 && pct <= 100) { // NaN too
		return 0, fmt.Errorf("%s %q is not a percentage", what, s)
	}
	return pct, nil
}

// PacketFault reads the probability of a NetworkChaos action that draws
// packets (loss, corrupt, duplicate), and the note on its correlation
// (Uncorrelated).
func PacketFault(spec *chaosv1alpha1.NetworkChaosSpec) (pct float64, note string, err error) {
	var p, c string
	switch {
	case spec.Action == chaosv1alpha1.LossAction && spec.Loss != nil:
		p, c = spec.Loss.Loss, spec.Loss.Correlation
	case spec.Action == chaosv1alpha1.CorruptAction && spec.Corrupt != nil:
		p, c = spec.Corrupt.Corrupt, spec.Corrupt.Correlation
	case spec.Action == chaosv1alpha1.DuplicateAction && spec.Duplicate != nil:
		p, c = spec.Duplicate.Duplicate, spec.Duplicate.Correlation
	default:
		return 0, "", errors.New("no " + string(spec.Action) + " given")
	}
	pct, err = Percent(string(spec.Action), p)
	return pct, Uncorrelated(c, "packet"), err
}

// Sample is the iptables match that draws each packet independently
// with probability pct%.
func Sample(pct float64) []string {
	return []string{"-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(pct/100, 'f', -1, 64)}
}

// CheckPacketFault checks, before the run, the probability of an action
// that draws packets (PacketFault); other actions pass.
func CheckPacketFault(spec *chaosv1alpha1.NetworkChaosSpec) error {
	switch spec.Action {
	case chaosv1alpha1.LossAction, chaosv1alpha1.DuplicateAction, chaosv1alpha1.CorruptAction:
		_, _, err := PacketFault(spec)
		return err
	}
	return nil
}

// SampledRules are the rules of a fault that drops each packet with
// probability pct% (FilterRules' matches, a target of its own each):
// rules marked as SampledComments' drop, and, after them in the list,
// rules with the same matches and no target, marked as its seen, which
// count every packet reaching them. Each inserted at its chain's head in
// order, a counting rule comes ahead of its dropping one, so that
// dropped of seen is the share dropped.
func SampledRules(dir chaosv1alpha1.Direction, iface string, addrs []string, comment string, pct float64) [][]string {
	drop, seen := SampledComments(comment)
	return slices.Concat(
		FilterRules(dir, iface, addrs, drop, [][]string{append(Sample(pct), "-j", "DROP")}),
		FilterRules(dir, iface, addrs, seen, [][]string{nil}))
}

// SampledComments are the comments of SampledRules' dropping and
// counting rules.
func SampledComments(comment string) (drop, seen string) {
	return comment + ":drop", comment + ":seen"
}

// Uncorrelated is the note of a fault whose correlation is not applied:
// each draw (of a packet, a delay) is independent.
func Uncorrelated(correlation, draw string) string {
	if c, _ := strconv.ParseFloat(strings.TrimSpace(correlation), 64); c != 0 {
		return "correlation " + correlation + "% not applied: each " + draw + " is drawn independently"
	}
	return ""
}

// FaultComment marks the rules of a run's faults.
func FaultComment(runID string) string { return "meshbench-fault:" + runID }

// PartitionTargets are the iptables targets of a partition's rules: drop
// (the default) silently drops; reject answers TCP with a reset and the
// rest with an ICMP error, as Chaos Mesh's reject does. The resets
// themselves pass: with direction both, a reset the INPUT rule sends
// would otherwise meet the OUTPUT rule and be dropped.
func PartitionTargets(b chaosv1alpha1.NetworkChaosPartitionBehavior) [][]string {
	if b == chaosv1alpha1.RejectPartitionBehavior {
		return [][]string{
			{"-p", "tcp", "!", "--tcp-flags", "RST", "RST", "-j", "REJECT", "--reject-with", "tcp-reset"},
			{"!", "-p", "tcp", "-j", "REJECT"},
		}
	}
	return [][]string{{"-j", "DROP"}}
}

// FilterRules are a network fault's rules in a pod's filter table, on
// its interface iface: to (OUTPUT) and from (INPUT) each of addrs ("" is
// any address), as dir says, each match followed by targets in order
// and marked with comment. Each rule is a chain and its arguments, in
// the order in which inserting each at its chain's head leaves the
// first target first.
func FilterRules(dir chaosv1alpha1.Direction, iface string, addrs []string, comment string, targets [][]string) [][]string {
	var rules [][]string
	for _, addr := range addrs {
		var matches [][]string
		if dir == chaosv1alpha1.To || dir == chaosv1alpha1.Both || dir == "" {
			m := []string{"OUTPUT", "-o", iface}
			if addr != "" {
				m = append(m, "-d", addr)
			}
			matches = append(matches, m)
		}
		if dir == chaosv1alpha1.From || dir == chaosv1alpha1.Both {
			m := []string{"INPUT", "-i", iface}
			if addr != "" {
				m = append(m, "-s", addr)
			}
			matches = append(matches, m)
		}
		for _, m := range matches {
			for i := len(targets) - 1; i >= 0; i-- {
				rules = append(rules, slices.Concat(m, []string{"-m", "comment", "--comment", comment}, targets[i]))
			}
		}
	}
	return rules
}
