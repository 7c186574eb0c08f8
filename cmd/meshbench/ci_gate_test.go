package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the meshbench tree the tests run in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// action is the part of action.yml a runner executes.
type action struct {
	Inputs map[string]struct {
		Default string `yaml:"default"`
	} `yaml:"inputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []struct {
			ID    string            `yaml:"id"`
			Shell string            `yaml:"shell"`
			Env   map[string]string `yaml:"env"`
			Run   string            `yaml:"run"`
		} `yaml:"steps"`
	} `yaml:"runs"`
}

var expr = regexp.MustCompile(`\$\{\{\s*([a-z.-]+)\s*\}\}`)

// actionRun is what one run of the action left.
type actionRun struct {
	code             int
	stderr           string
	summary, outputs string
	dir              string
}

// runAction runs the composite action's steps as a GitHub runner does
// (bash --noprofile --norc -eo pipefail, the step's env with its
// expressions filled in from inputs and their defaults, GITHUB_* files),
// in a fresh working directory.
func runAction(t *testing.T, inputs map[string]string) actionRun {
	t.Helper()
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a action
	if err := yaml.Unmarshal(data, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if a.Runs.Using != "composite" || len(a.Runs.Steps) == 0 {
		t.Fatalf("action.yml: runs.using %q with %d steps, want a composite action", a.Runs.Using, len(a.Runs.Steps))
	}
	for name := range inputs {
		if _, ok := a.Inputs[name]; !ok {
			t.Fatalf("the test gives input %q, which action.yml does not declare", name)
		}
	}
	dir := t.TempDir()
	run := actionRun{dir: dir}
	summary, outputs := filepath.Join(dir, "summary.md"), filepath.Join(dir, "outputs")
	fill := func(s string) string {
		return expr.ReplaceAllStringFunc(s, func(m string) string {
			name := expr.FindStringSubmatch(m)[1]
			switch {
			case name == "github.workspace":
				return root
			case strings.HasPrefix(name, "inputs."):
				in := strings.TrimPrefix(name, "inputs.")
				decl, ok := a.Inputs[in]
				if !ok {
					t.Fatalf("action.yml uses undeclared input %q", in)
				}
				if v, ok := inputs[in]; ok {
					return v
				}
				return decl.Default
			}
			t.Fatalf("action.yml: expression %s is not one this test provides", m)
			return ""
		})
	}
	for _, step := range a.Runs.Steps {
		if step.Shell != "bash" {
			t.Fatalf("step %s: shell %q, want bash", step.ID, step.Shell)
		}
		script := filepath.Join(dir, "step-"+step.ID+".sh")
		if err := os.WriteFile(script, []byte(fill(step.Run)), 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GITHUB_ACTION_PATH="+root, "GITHUB_WORKSPACE="+root,
			"GITHUB_STEP_SUMMARY="+summary, "GITHUB_OUTPUT="+outputs, "CI=true")
		for k, v := range step.Env {
			cmd.Env = append(cmd.Env, k+"="+fill(v))
		}
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		err := cmd.Run()
		cancel()
		run.stderr += stderr.String()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			run.code = ee.ExitCode()
		default:
			t.Fatalf("step %s: %v", step.ID, err)
		}
		if run.code != 0 {
			break
		}
	}
	s, _ := os.ReadFile(summary)
	o, _ := os.ReadFile(outputs)
	run.summary, run.outputs = string(s), string(o)
	return run
}

// checkGateRun asserts what every finished gate run leaves: the verdict
// in the outputs matching the exit code, the Markdown in the summary, and
// JUnit with a case per rule.
func checkGateRun(t *testing.T, r actionRun, wantCode int) {
	t.Helper()
	verdicts := map[int]string{0: "pass", 1: "fail", 3: "inconclusive"}
	want, ok := verdicts[r.code]
	if !ok || (wantCode >= 0 && r.code != wantCode) {
		t.Fatalf("exit %d, want %d (or a verdict's 0, 1, 3 when -1)\n%s", r.code, wantCode, r.stderr)
	}
	if !strings.Contains(r.outputs, "verdict="+want+"\n") || !strings.Contains(r.outputs, "results=") {
		t.Errorf("outputs %q do not say verdict=%s", r.outputs, want)
	}
	if !strings.HasPrefix(r.summary, "## meshbench compare: "+strings.ToUpper(want)) {
		t.Errorf("step summary:\n%s", r.summary)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "meshbench-gate", "gate.xml"))
	var suites struct {
		Tests int `xml:"tests,attr"`
	}
	if err != nil || xml.Unmarshal(data, &suites) != nil || suites.Tests == 0 {
		t.Errorf("JUnit: %v, %d tests\n%s", err, suites.Tests, data)
	}
}

// testCIGate runs the GitHub Action (scripts/ci-gate.sh) on real runs: a
// is the gate scenario's results, b the same with 50 ms of service time;
// their scenario files are beside them.
func testCIGate(t *testing.T, a, b string) {
	const runArgs = "--trials 4 --duration 1s --qps 300 --connections 32"
	fast, slow := filepath.Join(filepath.Dir(a), "a.yaml"), filepath.Join(filepath.Dir(b), "b.yaml")

	t.Run("bad input", func(t *testing.T) {
		r := runAction(t, nil)
		if r.code != 2 || !strings.Contains(r.stderr, "no base: give MESHBENCH_BASE_REF") {
			t.Errorf("no base: exit %d\n%s", r.code, r.stderr)
		}
		r = runAction(t, map[string]string{"base-results": a, "inconclusive": "maybe"})
		if r.code != 2 || !strings.Contains(r.stderr, "MESHBENCH_INCONCLUSIVE=maybe") {
			t.Errorf("bad inconclusive policy: exit %d\n%s", r.code, r.stderr)
		}
		r = runAction(t, map[string]string{"base-ref": "no-such-ref", "scenario": fast})
		if r.code != 2 || !strings.Contains(r.stderr, "MESHBENCH_BASE_REF=no-such-ref is not a commit") {
			t.Errorf("unknown base ref: exit %d\n%s", r.code, r.stderr)
		}
	})
	// 50 ms on every request: a regression no noise hides, either way.
	t.Run("regression", func(t *testing.T) {
		r := runAction(t, map[string]string{"base-results": a, "scenario": slow, "run-args": runArgs, "gate": "p50:auto,errors:0"})
		checkGateRun(t, r, 1)
	})
	t.Run("improvement", func(t *testing.T) {
		r := runAction(t, map[string]string{"base-results": b, "scenario": fast, "run-args": runArgs, "gate": "p50:auto,errors:0"})
		checkGateRun(t, r, 0)
	})
	// The base built from a ref in a git worktree, run, and compared with
	// the candidate: A/A, so any verdict, but a consistent one, and the
	// worktree is gone afterwards.
	t.Run("base ref", func(t *testing.T) {
		r := runAction(t, map[string]string{"base-ref": "HEAD", "scenario": fast, "run-args": runArgs})
		checkGateRun(t, r, -1)
		for _, side := range []string{"base", "candidate"} {
			if _, err := os.Stat(filepath.Join(r.dir, "meshbench-gate", side, "manifest.json")); err != nil {
				t.Errorf("%s results: %v", side, err)
			}
		}
		list, err := exec.Command("git", "-C", repoRoot(t), "worktree", "list").CombinedOutput()
		if err != nil || strings.Contains(string(list), r.dir) {
			t.Errorf("the base's worktree is left (or git failed: %v):\n%s", err, list)
		}
	})
}

// The README's GitLab job runs the same script with the same variables.
func TestGitLabJobMatchesTheScript(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "ci-gate.sh"))
	if err != nil {
		t.Fatal(err)
	}
	_, job, ok := strings.Cut(string(readme), "```yaml\n# .gitlab-ci.yml")
	job, _, _ = strings.Cut(job, "```")
	if !ok || !strings.Contains(job, "scripts/ci-gate.sh") {
		t.Fatalf("the README has no GitLab job running scripts/ci-gate.sh")
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(job), &doc); err != nil {
		t.Fatalf("the README's GitLab job is not YAML: %v\n%s", err, job)
	}
	vars := regexp.MustCompile(`\b(MESHBENCH_[A-Z_]+):`).FindAllStringSubmatch(job, -1)
	if len(vars) == 0 {
		t.Fatal("the GitLab job sets no MESHBENCH_ variables")
	}
	for _, v := range vars {
		if !strings.Contains(string(script), "${"+v[1]) {
			t.Errorf("the GitLab job sets %s, which scripts/ci-gate.sh does not read", v[1])
		}
	}
}
