package local

import (
	"context"
	"errors"
	"os/exec"
	"strconv"

	"github.com/meshbench/meshbench/meshes"
)

// transparent reports whether redirects can work: nodes are namespaces and
// iptables is installed.
func (p *platform) transparent() bool {
	_, err := exec.LookPath("iptables")
	return p.mode == NetNS && err == nil
}

// redirectRules renders redirects as iptables nat rules, in the order they
// are appended, the way Istio's init container writes them: outbound TCP
// to the proxy except the proxy's own (marked) and loopback traffic;
// inbound TCP to a port on eth0 to the proxy's inbound port.
func redirectRules(r meshes.Redirect, comment string) [][]string {
	c := []string{"-m", "comment", "--comment", comment}
	to := strconv.Itoa(r.ToPort)
	if r.Outbound {
		var rules [][]string
		if r.ExcludeMark != 0 {
			rules = append(rules, append([]string{"OUTPUT", "-p", "tcp", "-m", "mark", "--mark", strconv.Itoa(r.ExcludeMark), "-j", "RETURN"}, c...))
		}
		if r.ExcludeUID != 0 {
			rules = append(rules, append([]string{"OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(r.ExcludeUID), "-j", "RETURN"}, c...))
		}
		return append(rules,
			append([]string{"OUTPUT", "-p", "tcp", "-o", "lo", "-j", "RETURN"}, c...),
			append([]string{"OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", to}, c...),
		)
	}
	return [][]string{
		append([]string{"PREROUTING", "-p", "tcp", "-i", "eth0", "--dport", strconv.Itoa(r.Port), "-j", "REDIRECT", "--to-ports", to}, c...),
	}
}

// intercept installs the redirects in their nodes' namespaces and returns
// their removal. The rules live in the namespaces, so removing a namespace
// removes them too.
func (p *platform) intercept(ctx context.Context, redirects []meshes.Redirect) (func(context.Context) error, error) {
	type applied struct {
		ns   string
		rule []string
	}
	var done []applied
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			args := append([]string{"netns", "exec", done[i].ns, "iptables", "-w", "5", "-t", "nat", "-D"}, done[i].rule...)
			if _, err := p.ex.Run(ctx, "ip", args...); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, r := range redirects {
		ns := nsName(p.opts.RunID, r.Node)
		for _, rule := range redirectRules(r, ruleComment(p.opts.RunID)) {
			args := append([]string{"netns", "exec", ns, "iptables", "-w", "5", "-t", "nat", "-A"}, rule...)
			if _, err := p.ex.Run(ctx, "ip", args...); err != nil {
				return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
			}
			done = append(done, applied{ns: ns, rule: rule})
		}
	}
	return undo, nil
}
