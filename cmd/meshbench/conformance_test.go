package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// conformance runs the SMI suite with args and returns its outcomes, the
// failed cases as "mode spec step", and the exit code; the run leaves
// nothing behind.
func conformance(t *testing.T, args ...string) ([]*results.Conformance, []string, result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "results")
	r := meshbench(t, 4*time.Minute, append([]string{"conformance", "--suite", "smi", "--out", out}, args...)...)
	if m := regexp.MustCompile(`conformance ([0-9a-f]+):`).FindStringSubmatch(r.stderr); m == nil {
		t.Fatalf("no run id in the output (exit %d):\n%s", r.code, r.stderr)
	} else if l := leftovers(t, m[1]); len(l) > 0 {
		t.Errorf("the conformance run left behind: %v", l)
	}
	data, err := os.ReadFile(filepath.Join(out, results.ConformanceFile))
	if err != nil {
		t.Fatalf("exit %d: %v\n%s", r.code, err, r.stderr)
	}
	var outcomes []*results.Conformance
	if err := json.Unmarshal(data, &outcomes); err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, c := range outcomes {
		for _, s := range c.Specs {
			for _, cs := range s.Cases {
				if !cs.Passed {
					failed = append(failed, c.Mode+" "+s.Spec+" "+cs.Name)
				}
			}
		}
	}
	for _, f := range []string{"conformance.junit.xml", "conformance.meshery.json", "conformance.txt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	return outcomes, failed, r
}

// TestIntegrationConformanceSMI: the own mesh passes every step of the SMI
// suite in every mode; with a translation broken on purpose, exactly the
// cases that check it fail, in every mode; HAProxy reports NONE, saying
// why, and starts nothing.
func TestIntegrationConformanceSMI(t *testing.T) {
	integration(t)
	modes := []string{"sidecar", "per-node", "proxyless"}
	outcomes, failed, r := conformance(t)
	if r.code != 0 || len(failed) > 0 || len(outcomes) != 3 {
		t.Fatalf("exit %d, %d outcomes, failed %v\n%s", r.code, len(outcomes), failed, r.stdout)
	}
	for _, c := range outcomes {
		if p, n := c.Passed(); p != 24 || n != 24 {
			t.Errorf("%s/%s: %d of %d passed", c.Mesh, c.Mode, p, n)
		}
		for _, s := range c.Specs {
			if s.Capability != results.CapabilityFull {
				t.Errorf("%s/%s %s: capability %s", c.Mesh, c.Mode, s.Spec, s.Capability)
			}
		}
	}

	expect := func(cases ...string) []string {
		var out []string
		for _, m := range modes {
			for _, c := range cases {
				out = append(out, m+" "+c)
			}
		}
		slices.Sort(out)
		return out
	}
	for mutation, want := range map[string][]string{
		"rbac-allow-all": expect("traffic-access trafficDefault", "traffic-access trafficBlocked",
			"traffic-specs trafficPath", "traffic-specs trafficMethod"),
		"split-first-backend": expect("traffic-split trafficDefault", "traffic-split trafficOnlyC",
			"traffic-split trafficBGrtC", "traffic-split trafficCGrtB"),
	} {
		_, failed, r := conformance(t, "--mutate", mutation)
		slices.Sort(failed)
		if r.code != 1 || !slices.Equal(failed, want) {
			t.Errorf("mutation %s: exit %d, failed\n  %v\nwant\n  %v", mutation, r.code, failed, want)
		}
	}

	// grpc-go's proxyless mode carries no HTTP/1.1: not in the default
	// modes, and NONE with the reason when named.
	outcomes, _, r = conformance(t, "--modes", "proxyless-grpc")
	if r.code != 1 || len(outcomes) != 1 || !strings.Contains(outcomes[0].Reason, "it carries grpc only") {
		t.Fatalf("proxyless-grpc: exit %d, %+v", r.code, outcomes)
	}
	for _, s := range outcomes[0].Specs {
		if s.Capability != results.CapabilityNone || len(s.Cases) == 0 || !strings.HasPrefix(s.Cases[0].Message, "not run: ") {
			t.Errorf("proxyless-grpc %s: %+v", s.Spec, s)
		}
	}

	outcomes, _, r = conformance(t, "--mesh", "haproxy")
	if r.code != 1 || len(outcomes) == 0 {
		t.Fatalf("haproxy: exit %d, %d outcomes", r.code, len(outcomes))
	}
	for _, c := range outcomes {
		if c.Reason != "mesh haproxy has no traffic policy" || !strings.Contains(r.stdout, "haproxy/"+c.Mode+": 0 of 24 cases passed") {
			t.Errorf("haproxy/%s: reason %q\n%s", c.Mode, c.Reason, r.stdout)
		}
		for _, s := range c.Specs {
			if s.Capability != results.CapabilityNone {
				t.Errorf("haproxy/%s %s: capability %s", c.Mode, s.Spec, s.Capability)
			}
			// Nothing was deployed: every step after the first was not run.
			for _, cs := range s.Cases[1:] {
				if !strings.HasPrefix(cs.Message, "not run: ") {
					t.Errorf("haproxy/%s %s step %d ran: %s", c.Mode, s.Spec, cs.Step, cs.Message)
				}
			}
		}
	}
}
