package reports

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/meshbench/meshbench/runner/results"
)

// writeControlPlane writes a control-plane benchmark's table: per (mesh,
// mode), client count and kind of change, the time until 50, 90, 99 and
// 100% of the clients had acknowledged it, and the control plane's cost.
func writeControlPlane(w io.Writer, m *results.Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESH/MODE\tCLIENTS\tCHANGE\tP50\tP90\tP99\tALL\tWORST\tMISSED\tCP CPU\tCP RSS")
	for _, st := range m.ControlPlane {
		for _, ch := range st.Changes {
			l := ch.LatencyMs
			fmt.Fprintf(tw, "%s/%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.0fm\t%.0f MB\n", st.Mesh, st.Mode, st.Clients, ch.Change,
				ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), ms(ch.WorstMs), ch.Missed, st.ControlPlane.CPUMillicores, st.ControlPlane.RSSMaxMB)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	repeats, timeout := 0, ""
	if c := m.Scenario.ControlPlane; c != nil {
		repeats, timeout = c.Repeats, c.Timeout.String()
	}
	fmt.Fprintf(w, "\nTimes are from the change (the control plane's clock) to each client's acknowledgement of every\n"+
		"type it changed; P50..ALL are medians over %d repeats of each change, WORST the longest over all of them,\n"+
		"MISSED the acknowledgements not in within %s. Clients beyond the deployment's own are simulated:\n"+
		"real gRPC streams (mutual TLS, one connection each) that acknowledge without decoding, all on the load\n"+
		"generator's CPU. CP CPU is the control plane's mean over the changes (polling included), CP RSS its peak.\n",
		repeats, timeout)
	return nil
}

// controlPlaneText is the control-plane table as text ("" when the run
// was no control-plane benchmark).
func (r *Report) controlPlaneText() string {
	if r.Manifest == nil || len(r.Manifest.ControlPlane) == 0 {
		return ""
	}
	var b strings.Builder
	if err := writeControlPlane(&b, r.Manifest); err != nil {
		return ""
	}
	return b.String()
}
