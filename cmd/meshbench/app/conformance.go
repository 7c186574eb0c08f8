package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// Files a conformance run writes besides results.ConformanceFile.
const (
	conformanceJUnitFile   = "conformance.junit.xml"
	conformanceMesheryFile = "conformance.meshery.json"
	conformanceTextFile    = "conformance.txt"
)

type conformanceOptions struct {
	suite    string
	meshes   []string
	modes    []string
	out      string
	requests int
	alpha    float64
	mutate   string
	platform platformFlags
}

func newConformanceCommand(s Streams) *cobra.Command {
	o := &conformanceOptions{}
	cmd := &cobra.Command{
		Use:   "conformance --suite smi",
		Short: "Run the SMI conformance suite against meshes on the local platform",
		Long: `conformance runs the established SMI conformance suite's steps (Layer5's
smi-conformance: traffic-access, traffic-specs, traffic-split) against each
(mesh, mode), each spec on a fresh deployment of its application: app-a
calling app-b, and app-svc, a service whose selector covers app-b's and
app-c's workloads. Policy is put in force through the mesh's control plane,
and each check waits until every client runs it. Beyond the established
suite, every check sends --requests requests and judges all of them, and a
split's shares are judged with an exact binomial test at --alpha (the
false-failure rate of each check), not only "B got more than C".

It prints a table and writes conformance.json, JUnit XML and
Meshery-compatible JSON to the results directory. A mesh that cannot
express the suite's objects (HAProxy, nginx) reports capability NONE with
the reason. Exit codes: 0 every case passed, 1 a case failed, 2 bad input.`,
		Example: `  meshbench conformance --suite smi
  meshbench conformance --suite smi --mesh meshbench --modes sidecar,proxyless --out /tmp/smi
  meshbench conformance --suite smi --mesh haproxy`,
		Args: argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), s) },
	}
	f := cmd.Flags()
	f.StringVar(&o.suite, "suite", "", "the suite to run: smi")
	f.StringSliceVar(&o.meshes, "mesh", []string{"meshbench"}, "meshes to test")
	f.StringSliceVar(&o.modes, "modes", nil, "modes (e.g. sidecar,proxyless) or mesh/mode pairs to test (default: every mode of each mesh)")
	f.StringVar(&o.out, "out", "", "results directory (default meshbench-results/conformance-smi-<UTC time>)")
	f.IntVar(&o.requests, "requests", 200, "requests each check sends")
	f.Float64Var(&o.alpha, "alpha", 1e-6, "false-failure rate of each split check's binomial test")
	f.StringVar(&o.mutate, "mutate", "", "test only: make the control plane break one translation ("+strings.Join(controlplane.Mutations, ", ")+")")
	_ = f.MarkHidden("mutate")
	o.platform.bind(f)
	_ = cmd.MarkFlagRequired("suite")
	return cmd
}

func (o *conformanceOptions) targets() ([]scenarios.MeshRef, error) {
	if o.suite != "smi" {
		return nil, badInput(fmt.Errorf("flag --suite: unknown suite %q (smi)", o.suite))
	}
	if o.requests < 10 || o.requests > 10000 {
		return nil, badInput(fmt.Errorf("flag --requests: must be between 10 and 10000, got %d", o.requests))
	}
	if o.alpha <= 0 || o.alpha >= 0.5 {
		return nil, badInput(fmt.Errorf("flag --alpha: must be between 0 and 0.5, got %g", o.alpha))
	}
	if o.mutate != "" && !slices.Contains(controlplane.Mutations, o.mutate) {
		return nil, badInput(fmt.Errorf("flag --mutate: unknown mutation %q (%s)", o.mutate, strings.Join(controlplane.Mutations, ", ")))
	}
	reg := registry()
	// Every mode can be named with --modes; by default, those whose data
	// plane carries the suite's HTTP requests (a named one that does not
	// is reported NONE, with the reason).
	var all, carriers []scenarios.MeshRef
	for _, name := range o.meshes {
		m, ok := reg[name]
		if !ok || name == "none" {
			known := slices.DeleteFunc(slices.Sorted(maps.Keys(reg)), func(n string) bool { return n == "none" })
			return nil, badInput(fmt.Errorf("flag --mesh: unknown mesh %q (known: %s)", name, strings.Join(known, ", ")))
		}
		for _, mode := range m.Modes() {
			ref := scenarios.MeshRef{Name: name, Mode: mode}
			all = append(all, ref)
			if meshes.Carries(m, scenarios.ProtocolHTTP, mode) == nil {
				carriers = append(carriers, ref)
			}
		}
	}
	if len(o.modes) == 0 {
		return carriers, nil
	}
	kept, err := filterMeshes(all, o.modes)
	if err != nil {
		return nil, badInput(err)
	}
	return kept, nil
}

func (o *conformanceOptions) run(ctx context.Context, s Streams) error {
	targets, err := o.targets()
	if err != nil {
		return err
	}
	if err := o.platform.choose(nil); err != nil {
		return badInput(err)
	}
	outDir, err := resultsDir(o.out, "conformance-smi")
	if err != nil {
		return err
	}
	runID := newRunID()
	log := &progress{w: s.ErrOut}
	plat, err := o.platform.create(ctx, platformRun{runID: runID, outDir: outDir}, log)
	if err != nil {
		return err
	}
	log.Logf("conformance %s: SMI suite, %d (mesh, mode) pairs; results: %s", runID, len(targets), outDir)
	if o.mutate != "" {
		log.Logf("MUTATED on purpose (test only): the control plane breaks %s", o.mutate)
	}
	outcomes, runErr := runner.Conformance(ctx, runner.ConformanceOptions{
		Options: runner.Options{Meshes: registry(), Platform: plat, OutDir: outDir, RunID: runID, Log: log,
			Build: results.Build{Version: version, Commit: commit, GoVersion: runtime.Version()}},
		Targets: targets, Requests: o.requests, Alpha: o.alpha, Mutate: o.mutate,
	})
	if len(outcomes) > 0 {
		if err := writeConformance(s.Out, outDir, runID, outcomes); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted; finished outcomes are in %s", outDir)
		}
		return runErr
	}
	log.Logf("results written to %s", outDir)
	for _, c := range outcomes {
		if p, t := c.Passed(); p != t {
			return &gateError{code: ExitFailed, msg: "conformance: a case failed"}
		}
	}
	return nil
}

// writeConformance prints the table and writes it, JUnit and Meshery's
// JSON next to the outcomes.
func writeConformance(w io.Writer, dir, runID string, outcomes []*results.Conformance) error {
	var sb strings.Builder
	if err := reports.WriteConformanceTable(&sb, outcomes); err != nil {
		return err
	}
	fmt.Fprint(w, "\n"+sb.String())
	files := map[string]func(io.Writer) error{
		conformanceTextFile:    func(w io.Writer) error { _, err := io.WriteString(w, sb.String()); return err },
		conformanceJUnitFile:   func(w io.Writer) error { return reports.WriteConformanceJUnit(w, outcomes) },
		conformanceMesheryFile: func(w io.Writer) error { return reports.WriteMesheryConformance(w, runID, version, outcomes) },
	}
	for name, write := range files {
		var b strings.Builder
		if err := write(&b); err != nil {
			return err
		}
		if err := results.WriteFile(filepath.Join(dir, name), []byte(b.String())); err != nil {
			return err
		}
	}
	return nil
}
