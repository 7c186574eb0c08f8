package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// WriteConformanceTable writes a conformance run: per (mesh, mode) and
// spec, its capability and every case, a failed case with what was seen.
func WriteConformanceTable(w io.Writer, outcomes []*results.Conformance) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESH/MODE\tSPEC\tCAPABILITY\tSTEP\tCASE\tRESULT\tDETAIL")
	for _, c := range outcomes {
		for _, s := range c.Specs {
			for _, cs := range s.Cases {
				result := "PASS"
				if !cs.Passed {
					result = "FAIL"
				}
				fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d\t%s\t%s\t%s\n", c.Mesh, c.Mode, s.Spec, s.Capability, cs.Step, cs.Name, result, oneLine(cs.Message, 140))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, c := range outcomes {
		passed, total := c.Passed()
		var caps []string
		for _, s := range c.Specs {
			caps = append(caps, s.Spec+" "+s.Capability)
		}
		line := fmt.Sprintf("%s/%s: %d of %d cases passed (%s)", c.Mesh, c.Mode, passed, total, strings.Join(caps, ", "))
		if c.Reason != "" {
			line += ": " + c.Reason
		}
		if c.Mutate != "" {
			line += " [mutated on purpose: " + c.Mutate + "]"
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

// WriteConformanceJUnit writes one test suite per (mesh, mode, spec) and a
// test case per step.
func WriteConformanceJUnit(w io.Writer, outcomes []*results.Conformance) error {
	var suites []junitSuite
	for _, c := range outcomes {
		for _, s := range c.Specs {
			suite := junitSuite{Name: fmt.Sprintf("smi %s %s/%s", s.Spec, c.Mesh, c.Mode)}
			for _, cs := range s.Cases {
				jc := junitCase{Name: fmt.Sprintf("%02d-%s", cs.Step, cs.Name), ClassName: s.Spec, SystemOut: cs.Assertion + ": " + cs.Message}
				if !cs.Passed {
					jc.Failure = &junitMessage{Message: cs.Assertion, Type: "FAIL", Text: cs.Message}
					suite.Failures++
				}
				suite.Cases = append(suite.Cases, jc)
				suite.Tests++
			}
			suites = append(suites, suite)
		}
	}
	return writeJUnit(w, "meshbench conformance smi", suites)
}

// MesheryConformance is a conformance outcome in the shape Meshery's
// adapters report SMI conformance (meshery-adapter-library adapter/smi.go:
// Response and Detail). Capability is FULL, HALF (meshbench's PARTIAL) or
// NONE; a detail's result is its message or its first failure.
type MesheryConformance struct {
	ID                string          `json:"id"`
	Date              string          `json:"date"`
	MeshName          string          `json:"mesh_name"`
	MeshVersion       string          `json:"mesh_version"`
	CasesPassed       string          `json:"cases_passed"`
	PassingPercentage string          `json:"passing_percentage"`
	Status            string          `json:"status"`
	MoreDetails       []MesheryDetail `json:"more_details"`
}

// MesheryDetail is one spec's outcome, as Meshery's Detail.
type MesheryDetail struct {
	SmiSpecification string `json:"smi_specification"`
	SmiVersion       string `json:"smi_version"`
	Time             string `json:"time"`
	Assertions       string `json:"assertions"`
	Result           string `json:"result"`
	Reason           string `json:"reason"`
	Capability       string `json:"capability"`
	Status           string `json:"status"`
}

// WriteMesheryConformance writes one Meshery response per (mesh, mode).
func WriteMesheryConformance(w io.Writer, runID, version string, outcomes []*results.Conformance) error {
	out := []MesheryConformance{}
	for _, c := range outcomes {
		passed, total := c.Passed()
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(passed) / float64(total)
		}
		m := MesheryConformance{
			ID: fmt.Sprintf("%s-%s-%s", runID, c.Mesh, c.Mode), Date: c.Start.Format(time.RFC3339),
			MeshName: c.Mesh + "/" + c.Mode, MeshVersion: version,
			CasesPassed: fmt.Sprint(passed), PassingPercentage: fmt.Sprintf("%.2f", pct), Status: "completed",
		}
		for _, s := range c.Specs {
			d := MesheryDetail{SmiSpecification: s.Spec, SmiVersion: s.Version, Time: fmt.Sprintf("%.3fs", s.Seconds),
				Assertions: fmt.Sprint(len(s.Cases)), Capability: s.Capability, Status: "PASSED", Result: "All test passed"}
			if d.Capability == results.CapabilityPartial {
				d.Capability = "HALF"
			}
			for _, cs := range s.Cases {
				if !cs.Passed {
					d.Status = "FAILED"
					d.Result = fmt.Sprintf("step %d (%s) failed", cs.Step, cs.Name)
					d.Reason = cs.Message
					break
				}
			}
			m.MoreDetails = append(m.MoreDetails, d)
		}
		out = append(out, m)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
