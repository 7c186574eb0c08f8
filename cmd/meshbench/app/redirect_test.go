package app

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/kind"
)

// What the kind platform asks of a pod's redirect container is what the
// runner rendered: each redirect, written as flags by the platform and
// read back by the command, writes the same iptables rules, in the same
// order (the mesh's first, a Service's balancing after them).
func TestRedirectFlagsRoundTrip(t *testing.T) {
	a := netip.MustParseAddr
	rs := []meshes.Redirect{
		{Port: 8080, ToPort: 15006},
		{Outbound: true, ToPort: 15001, ExcludeMark: 1337, ExcludeUID: 1337},
		{Service: a("10.1.0.3"), Port: 8080, Endpoints: []netip.Addr{a("10.1.0.3"), a("10.1.0.4"), a("10.1.0.5")}},
		{Service: a("10.1.0.6"), Port: 9090, Endpoints: []netip.Addr{a("10.1.0.6"), a("10.1.0.7")}},
	}
	// Flags in another order than the rules': the Services' first.
	var args []string
	for _, i := range []int{2, 0, 3, 1} {
		args = append(args, kind.RedirectArgs(rs[i])...)
	}
	o := &redirectOptions{}
	cmd := newRedirectCommand(Streams{})
	cmd.RunE = func(*cobra.Command, []string) error { return nil }
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("redirect %v: %v", args, err)
	}
	// The command's options, as its flags set them.
	o.inbound, _ = cmd.Flags().GetStringSlice("inbound")
	o.services, _ = cmd.Flags().GetStringArray("service")
	o.outbound, _ = cmd.Flags().GetInt("outbound")
	o.excludeMark, _ = cmd.Flags().GetInt("exclude-mark")
	o.excludeUID, _ = cmd.Flags().GetInt("exclude-uid")
	got, err := o.redirects()
	if err != nil {
		t.Fatal(err)
	}
	rules := func(rs []meshes.Redirect) (out [][]string) {
		for _, r := range rs {
			out = append(out, r.Rules("c")...)
		}
		return out
	}
	if w, g := rules(rs), rules(got); !slices.EqualFunc(w, g, slices.Equal) {
		t.Errorf("flags %v give rules\n%v\nwant\n%v", args, g, w)
	}
}
