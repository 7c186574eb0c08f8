package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/meshes"
)

type redirectOptions struct {
	inbound                 []string
	services                []string
	outbound                int
	excludeMark, excludeUID int
	comment                 string
	remove                  bool
}

// newRedirectCommand is what a pod's init container runs on Kubernetes
// (as Istio's istio-init does): it installs the mesh's redirects in the
// pod's network namespace with the same rules the local platform writes.
func newRedirectCommand(s Streams) *cobra.Command {
	o := &redirectOptions{}
	cmd := &cobra.Command{
		Use:    "redirect",
		Short:  "Install a mesh's traffic redirects in this network namespace (a pod's init container)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := o.redirects()
			if err != nil {
				return badInput(err)
			}
			if o.remove {
				return removeRedirects(cmd.Context(), rs, o.comment, s)
			}
			return installRedirects(cmd.Context(), rs, o.comment, s)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.inbound, "inbound", nil, "PORT:TO: inbound TCP to PORT on eth0 goes to the proxy's port TO (repeatable)")
	f.IntVar(&o.outbound, "outbound", 0, "outbound TCP goes to the proxy's port (0: none)")
	f.StringArrayVar(&o.services, "service", nil, "ADDR:PORT=EP,EP...: connections to a Service's address go to one of its endpoints at random, as kube-proxy sends them (repeatable; after the other redirects)")
	f.IntVar(&o.excludeMark, "exclude-mark", 0, "outbound: the proxy's own traffic carries this SO_MARK")
	f.IntVar(&o.excludeUID, "exclude-uid", 0, "outbound: the proxy's own traffic is this user's")
	f.StringVar(&o.comment, "comment", "meshbench", "the comment every rule carries")
	f.BoolVar(&o.remove, "remove", false, "remove the rules the same flags installed")
	return cmd
}

func (o *redirectOptions) redirects() ([]meshes.Redirect, error) {
	var out []meshes.Redirect
	for _, in := range o.inbound {
		p, to, ok := strings.Cut(in, ":")
		port, err1 := strconv.Atoi(p)
		toPort, err2 := strconv.Atoi(to)
		if !ok || err1 != nil || err2 != nil || port < 1 || port > 65535 || toPort < 1 || toPort > 65535 {
			return nil, fmt.Errorf("--inbound %q: want PORT:TO", in)
		}
		out = append(out, meshes.Redirect{Port: port, ToPort: toPort})
	}
	if o.outbound < 0 || o.outbound > 65535 {
		return nil, fmt.Errorf("--outbound %d: want a port", o.outbound)
	}
	if o.outbound > 0 {
		out = append(out, meshes.Redirect{Outbound: true, ToPort: o.outbound, ExcludeMark: o.excludeMark, ExcludeUID: o.excludeUID})
	}
	for _, sv := range o.services {
		r, err := serviceRedirect(sv)
		if err != nil {
			return nil, fmt.Errorf("--service %q: %w", sv, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("nothing to redirect: give --inbound, --outbound or --service")
	}
	return out, nil
}

// serviceRedirect parses ADDR:PORT=EP,EP... (meshes.Redirect's Service,
// Port and Endpoints).
func serviceRedirect(v string) (meshes.Redirect, error) {
	svc, eps, ok := strings.Cut(v, "=")
	ap, err := netip.ParseAddrPort(svc)
	if !ok || err != nil || ap.Port() == 0 || eps == "" {
		return meshes.Redirect{}, errors.New("want ADDR:PORT=EP,EP...")
	}
	r := meshes.Redirect{Service: ap.Addr(), Port: int(ap.Port())}
	for _, e := range strings.Split(eps, ",") {
		a, err := netip.ParseAddr(e)
		if err != nil {
			return meshes.Redirect{}, fmt.Errorf("endpoint %q: %w", e, err)
		}
		r.Endpoints = append(r.Endpoints, a)
	}
	return r, nil
}

// installRedirects appends the rules; on a failure it removes the ones it
// appended.
func installRedirects(ctx context.Context, rs []meshes.Redirect, comment string, s Streams) error {
	var done [][]string
	for _, r := range rs {
		for _, rule := range r.Rules(comment) {
			out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-A"}, rule...)...).CombinedOutput()
			if err != nil {
				for i := len(done) - 1; i >= 0; i-- {
					_ = exec.Command("iptables", append([]string{"-w", "5", "-t", "nat", "-D"}, done[i]...)...).Run()
				}
				return fmt.Errorf("iptables -t nat -A %s: %v: %s", strings.Join(rule, " "), err, strings.TrimSpace(string(out)))
			}
			done = append(done, rule)
			fmt.Fprintf(s.Out, "-A %s\n", strings.Join(rule, " "))
		}
	}
	return nil
}

// removeRedirects deletes the rules the same redirects installed, last
// first; a rule that is not there is no error (the removal is repeatable).
func removeRedirects(ctx context.Context, rs []meshes.Redirect, comment string, s Streams) error {
	var rules [][]string
	for _, r := range rs {
		rules = append(rules, r.Rules(comment)...)
	}
	var errs []error
	for i := len(rules) - 1; i >= 0; i-- {
		args := append([]string{"-w", "5", "-t", "nat", "-D"}, rules[i]...)
		out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "does a matching rule exist") && !strings.Contains(string(out), "No chain/target/match") {
			errs = append(errs, fmt.Errorf("iptables -t nat -D %s: %v: %s", strings.Join(rules[i], " "), err, strings.TrimSpace(string(out))))
			continue
		}
		fmt.Fprintf(s.Out, "-D %s\n", strings.Join(rules[i], " "))
	}
	return errors.Join(errs...)
}
