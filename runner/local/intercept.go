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
		for _, rule := range r.Rules(ruleComment(p.opts.RunID)) {
			args := append([]string{"netns", "exec", ns, "iptables", "-w", "5", "-t", "nat", "-A"}, rule...)
			if _, err := p.ex.Run(ctx, "ip", args...); err != nil {
				return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
			}
			done = append(done, applied{ns: ns, rule: rule})
		}
	}
	return undo, nil
}
