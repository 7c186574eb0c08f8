package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/meshes/haproxy"
	"github.com/meshbench/meshbench/meshes/meshbench"
	"github.com/meshbench/meshbench/meshes/nginx"
	"github.com/meshbench/meshbench/meshes/none"
	"github.com/meshbench/meshbench/meshes/upstream"
	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/kind"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// registry lists the meshes a scenario may name. Adding a mesh is one
// sub-package of meshes and one line here.
func registry() map[string]meshes.Mesh {
	all := []meshes.Mesh{
		none.New(),
		meshbench.New(version),
		haproxy.New(),
		nginx.New(),
		upstream.Istio(),
		upstream.Linkerd(),
	}
	m := map[string]meshes.Mesh{}
	for _, x := range all {
		m[x.Name()] = x
	}
	return m
}

type runOptions struct {
	duration    time.Duration
	qps         float64
	connections int
	trials      int
	modes       []string
	out         string
	profile     bool
	candidate   string
	platform    platformFlags
}

func newRunCommand(s Streams) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [SCENARIO]",
		Short: "Run a scenario and print the comparison table",
		Long: `Run a scenario: a file, or the name of a built-in scenario (see 'meshbench
scenarios list'). With no argument, runs the built-in "default" scenario.

Results go to meshbench-results/<scenario>-<UTC time>/ (or --out): per trial the
SMPS PerformanceTestConfig and PerformanceTestResult, fortio's raw result, and
the process logs; plus the run manifest and the summary table.

Exit codes: 0 success, 1 the run failed, 2 bad input (flags, scenario).`,
		Example: `  # The default scenario: baseline vs the meshbench sidecar at 1000 rps
  meshbench run

  # A quick run with overrides, results in a chosen directory
  meshbench run default --duration 3s --trials 1 --out /tmp/mb

  # A scenario file, only the sidecar mode (and the baseline to compare with)
  meshbench run my-scenario.yaml --modes baseline,sidecar

  # Two builds of the proxy in one run, trial by trial, then compared paired
  meshbench run gate --candidate-binary ./pr/bin/meshbench --out /tmp/pr && meshbench compare --paired /tmp/pr --gate auto

  # Where the proxies' time goes: profiles per proxy per trial, flame graphs
  meshbench run reference --profile --out /tmp/mb && meshbench report /tmp/mb --format html --out report.html`,
		Args:              argsCheck(cobra.MaximumNArgs(1)),
		ValidArgsFunction: completeBuiltins,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), s, cmd, args)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 0, "override load.duration: measured time per trial (e.g. 10s)")
	f.Float64Var(&o.qps, "qps", 0, "override load.qps: requests per second")
	f.IntVar(&o.connections, "connections", 0, "override load.connections: concurrent connections")
	f.IntVar(&o.trials, "trials", 0, "override trials: repetitions of every (mesh, mode)")
	f.StringSliceVar(&o.modes, "modes", nil, "run only these modes (e.g. baseline,sidecar) or mesh/mode pairs (e.g. meshbench/sidecar)")
	f.StringVar(&o.out, "out", "", "results directory (default meshbench-results/<scenario>-<UTC time>)")
	f.StringVar(&o.candidate, "candidate-binary", "", "another build of meshbench (or of meshbench-proxy) whose proxy runs beside this one's: every meshbench sidecar and per-node row gets a twin row MESH"+reports.CandidateSuffix+" in the same trials (compare them with 'meshbench compare --paired')")
	f.BoolVar(&o.profile, "profile", false, "take the meshbench proxies' CPU, allocation and heap profiles (pprof) over each trial; 'meshbench report --format html' draws them as flame graphs")
	o.platform.kindOK = true
	o.platform.bind(f)
	return cmd
}

// resultsDir is --out, or meshbench-results/<name>-<UTC time>; it must be
// empty or absent.
func resultsDir(out, name string) (string, error) {
	if out == "" {
		out = filepath.Join("meshbench-results", name+"-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := checkOutDir(out); err != nil {
		return "", badInput(err)
	}
	return out, nil
}

func (o *runOptions) run(ctx context.Context, s Streams, cmd *cobra.Command, args []string) error {
	sc, err := loadScenario(args)
	if err != nil {
		return badInput(err)
	}
	if err := o.apply(sc, cmd); err != nil {
		return badInput(err)
	}
	if err := o.platform.choose(sc); err != nil {
		return badInput(err)
	}
	if o.platform.onPods() {
		for i, m := range sc.Meshes {
			if m.Proxy != nil && m.Proxy.Binary != "" {
				return badInput(sc.FieldError(fmt.Sprintf("meshes[%d].proxy.binary", i),
					"%s is a file of this host: another proxy build runs on the local platform only in this build (the pods run their image's, --platform %s)", m.Proxy.Binary, o.platform.name))
			}
		}
	}
	if err := sc.Validate(); err != nil {
		return err
	}
	reg := registry()
	if _, _, err := runner.PlanRun(sc, reg); err != nil {
		return err
	}
	outDir, err := resultsDir(o.out, sc.Name)
	if err != nil {
		return err
	}
	runID := newRunID()
	log := &progress{w: s.ErrOut}
	if o.platform.onPods() {
		// The pods see the results directory at the same path.
		if outDir, err = filepath.Abs(outDir); err != nil {
			return err
		}
	}
	plat, err := o.platform.create(ctx, platformRun{runID: runID, outDir: outDir, loadGen: []string{sc.Topology.Client.Name}, together: together(sc.Topology), replicas: replicas(sc.Topology)}, log)
	if err != nil {
		return err
	}
	d := plat.Describe()
	log.Logf("run %s: scenario %q, network %s (%s)", runID, sc.Name, d.Network, d.NetworkReason)
	log.Logf("results: %s", outDir)
	if o.candidate != "" && sc.Order == scenarios.OrderRotate && sc.Trials%2 == 1 {
		log.Logf("--candidate-binary with %d trials: the candidate rows run after their base rows in one trial more than before them; an even --trials balances them", sc.Trials)
	}

	// Made here, exclusively, when absent: a run whose cluster turns out
	// unfit removes it, and only the directory it made.
	made := false
	if _, err := os.Stat(outDir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(outDir), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(outDir, 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		made = true
	}
	manifest, trials, runErr := runner.Run(ctx, runner.Options{
		Scenario: sc, Meshes: reg, Platform: plat, OutDir: outDir, RunID: runID, Log: log, Profile: o.profile,
		Build: results.Build{Version: version, Commit: commit, GoVersion: runtime.Version()},
	})
	if len(trials) > 0 || (manifest != nil && len(manifest.ControlPlane) > 0) {
		if err := writeSummary(s.Out, outDir, manifest, trials); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		if errors.Is(runErr, kind.ErrUnfit) {
			// Found once the pods ran, and removed with them: bad input,
			// which leaves no results directory either.
			if made && len(trials) == 0 {
				_ = os.RemoveAll(outDir)
			}
			return badInput(runErr)
		}
		if made && len(trials) == 0 {
			// Refused before it wrote anything (the runner's own checks):
			// the directory goes as it came. Not when it holds something.
			_ = os.Remove(outDir)
		}
		if errors.Is(runErr, context.Canceled) {
			runErr = fmt.Errorf("interrupted; finished trials are in %s", outDir)
		}
		return runErr
	}
	log.Logf("results written to %s", outDir)
	return nil
}

// loadScenario resolves the argument: a file when one exists at that path,
// else a built-in name, else an error that says which was tried.
func loadScenario(args []string) (*scenarios.Scenario, error) {
	if len(args) == 0 {
		return scenarios.LoadBuiltin(scenarios.DefaultName)
	}
	arg := args[0]
	if _, err := os.Stat(arg); err == nil {
		return scenarios.LoadFile(arg)
	}
	if scenarios.IsBuiltin(arg) {
		return scenarios.LoadBuiltin(arg)
	}
	if strings.ContainsAny(arg, "/.") {
		return nil, fmt.Errorf("%s: no such file", arg)
	}
	return nil, fmt.Errorf("%q is neither a file nor a built-in scenario (built-in: %s)", arg, builtinNames())
}

// apply writes the flag overrides into the scenario, recording that the
// flags (not the file) set those fields, so that errors name the flag.
func (o *runOptions) apply(sc *scenarios.Scenario, cmd *cobra.Command) error {
	f := cmd.Flags()
	if f.Changed("duration") {
		sc.Load.Duration = scenarios.Duration(o.duration)
		sc.Override("load.duration", "duration")
	}
	if f.Changed("qps") {
		sc.Load.QPS, sc.Load.Rates, sc.Load.Max = o.qps, nil, nil // one rate replaces a sweep or a search
		sc.Override("load.qps", "qps")
	}
	if f.Changed("connections") {
		sc.Load.Connections = o.connections
		sc.Override("load.connections", "connections")
	}
	if f.Changed("trials") {
		sc.Trials = o.trials
		sc.Override("trials", "trials")
	}
	if f.Changed("modes") {
		kept, err := filterMeshes(sc.Meshes, o.modes)
		if err != nil {
			return err
		}
		sc.Meshes = kept
	}
	if f.Changed("candidate-binary") {
		return addCandidate(sc, o.candidate)
	}
	return nil
}

// addCandidate puts a twin of every own-mesh row that runs proxy
// processes right after it, its proxies the candidate build's: adjacent,
// the two rows of a trial run one after the other.
func addCandidate(sc *scenarios.Scenario, path string) error {
	if path == "" {
		return errors.New("flag --candidate-binary: give the path of the candidate's meshbench binary")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("flag --candidate-binary: %v", err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("flag --candidate-binary: %s is not an executable file", path)
	}
	rows := map[string]bool{}
	for _, r := range sc.Meshes {
		rows[r.String()] = true
	}
	twins := 0
	for i := 0; i < len(sc.Meshes); i++ {
		r := sc.Meshes[i]
		// A row that runs a build of its own already is not the base build.
		if r.Name != meshbench.Name || (r.Mode != scenarios.Sidecar && r.Mode != scenarios.PerNode) || r.Proxy != nil && r.Proxy.Binary != "" {
			continue
		}
		if strings.HasSuffix(r.Row(), reports.CandidateSuffix) {
			return fmt.Errorf("flag --candidate-binary: the scenario's row %s already ends in %s: rename it (as:) so that its twin can be told from it", r, reports.CandidateSuffix)
		}
		twin := r
		twin.As = r.Row() + reports.CandidateSuffix
		if rows[twin.String()] {
			return fmt.Errorf("flag --candidate-binary: the scenario already has a row %s, the name of %s's candidate twin", twin, r)
		}
		tuning := scenarios.ProxyTuning{}
		if r.Proxy != nil {
			tuning = *r.Proxy
		}
		tuning.Binary = abs
		twin.Proxy = &tuning
		sc.InsertMesh(i+1, twin, "candidate-binary")
		i++
		twins++
	}
	if twins == 0 {
		return fmt.Errorf("flag --candidate-binary: the scenario has no %s sidecar or per-node row to run a candidate proxy beside", meshbench.Name)
	}
	return nil
}

func filterMeshes(refs []scenarios.MeshRef, want []string) ([]scenarios.MeshRef, error) {
	var kept []scenarios.MeshRef
	used := map[string]bool{}
	for _, r := range refs {
		for _, w := range want {
			if w == string(r.Mode) || w == r.String() {
				kept = append(kept, r)
				used[w] = true
				break
			}
		}
	}
	for _, w := range want {
		if !used[w] {
			var have []string
			for _, r := range refs {
				have = append(have, r.String())
			}
			return nil, fmt.Errorf("invalid --modes: %q matches none of %s", w, strings.Join(have, ", "))
		}
	}
	return kept, nil
}

func checkOutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out %s: %v", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("--out %s: directory exists and is not empty; results are never overwritten", dir)
	}
	return nil
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeSummary(w io.Writer, dir string, m *results.Manifest, trials []*results.Trial) error {
	rows := reports.Summarize(trials)
	var sb strings.Builder
	if err := reports.WriteTable(&sb, m, rows); err != nil {
		return err
	}
	reports.WriteVerdicts(&sb, trials)
	reports.WriteProfilesText(&sb, reports.SummarizeProfiles(dir, reports.GroupTrials(trials)))
	fmt.Fprint(w, "\n"+sb.String())
	if err := results.WriteFile(filepath.Join(dir, results.SummaryTextFile), []byte(sb.String())); err != nil {
		return err
	}
	return results.WriteJSON(filepath.Join(dir, results.SummaryJSONFile), rows)
}

// progress prints timestamped progress lines to stderr.
type progress struct{ w io.Writer }

func (p *progress) Logf(format string, args ...any) {
	fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// replicas maps each service of t with more than one pod to its pods.
func replicas(t scenarios.Topology) map[string][]string {
	out := map[string][]string{}
	for _, svc := range t.ServiceList() {
		if pods := svc.PodNames(); len(pods) > 1 {
			out[svc.Name] = pods
		}
	}
	return out
}

// together maps each pod of t on a shared node to that node.
func together(t scenarios.Topology) map[string]string {
	out := map[string]string{}
	for _, p := range t.Workloads() {
		if n := t.NodeOf(p); n != "" {
			out[p] = n
		}
	}
	return out
}
