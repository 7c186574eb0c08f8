package local

import (
	"context"
	"errors"
	"os/exec"

	"github.com/meshbench/meshbench/meshes"
)

// transparent reports whether redirects can work: nodes are namespaces and
// iptables is installed.
func (p *platform) transparent() bool {
	_, err := exec.LookPath("iptables")
	return p.mode == NetNS && err == nil
}

// intercept installs the redirects in their nodes' namespaces and returns
// their removal. The rules live in the namespaces, so removing a namespace
// removes them too.
func (p *platform) intercept(ctx context.Context, redirects []meshes.Redirect) (func(context.Context) error, error) {
	var rules []nsRule
	for _, r := range redirects {
		for _, rule := range r.Rules(ruleComment(p.opts.RunID)) {
			rules = append(rules, nsRule{ns: nsName(p.opts.RunID, r.Node), table: "nat", rule: rule})
		}
	}
	undo, err := p.applyRules(ctx, rules, false)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	for _, r := range redirects {
		if inboundRedirect(r) {
			if p.inbound[r.Node] == nil {
				p.inbound[r.Node] = map[int]int{}
			}
			p.inbound[r.Node][r.Port] = r.ToPort
		}
	}
	p.mu.Unlock()
	return func(ctx context.Context) error {
		p.mu.Lock()
		for _, r := range redirects {
			if inboundRedirect(r) {
				delete(p.inbound[r.Node], r.Port)
			}
		}
		p.mu.Unlock()
		return undo(ctx)
	}, nil
}

// inboundRedirect says a redirect sends a node's inbound connections to a
// port of its own (not a Service's load balancing, nor outbound).
func inboundRedirect(r meshes.Redirect) bool {
	return !r.Outbound && !r.Service.IsValid() && r.ToPort != 0
}

// nsRule is an iptables rule in a node's namespace: its table, then its
// chain followed by its match and target.
type nsRule struct {
	ns, table string
	rule      []string
}

// applyRules adds rules in order (appended, or each inserted at the head
// of its chain when head) and returns their removal, last first; on error
// it removes what it added.
func (p *platform) applyRules(ctx context.Context, rules []nsRule, head bool) (func(context.Context) error, error) {
	iptables := func(ctx context.Context, r nsRule, op string) error {
		args := []string{"netns", "exec", r.ns, "iptables", "-w", "5", "-t", r.table, op, r.rule[0]}
		if op == "-I" {
			args = append(args, "1")
		}
		_, err := p.ex.Run(ctx, "ip", append(args, r.rule[1:]...)...)
		return err
	}
	var done []nsRule
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, iptables(ctx, done[i], "-D"))
		}
		return errors.Join(errs...)
	}
	op := "-A"
	if head {
		op = "-I"
	}
	for _, r := range rules {
		if err := iptables(ctx, r, op); err != nil {
			return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
		done = append(done, r)
	}
	return undo, nil
}
