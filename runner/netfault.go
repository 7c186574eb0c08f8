package runner

import (
	"slices"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

// ExecIPTables is the executor of a partition: filter rules in the pods'
// network namespaces.
const ExecIPTables = "iptables"

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
