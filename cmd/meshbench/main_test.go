package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// meshbenchBin is the binary built once for the tests in this package.
var meshbenchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshbench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshbenchBin = filepath.Join(dir, "meshbench")
	// Static, as make build makes them: the image tests put meshbench in
	// an image, and runs start meshbench-proxy (and on kind
	// meshbench-pod-process) from beside it.
	// meshbench first: from modified sources, meshbench runs a
	// meshbench-proxy beside it only if it was built after it.
	for _, b := range []struct{ bin, pkg string }{{meshbenchBin, "."}, {filepath.Join(dir, "meshbench-proxy"), "../meshbench-proxy"}, {filepath.Join(dir, "meshbench-pod-process"), "../meshbench-pod-process"}} {
		bin, pkg := b.bin, b.pkg
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// meshbench runs the binary to completion (bounded by timeout).
func meshbench(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshbenchBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("meshbench %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("meshbench %v did not finish within %s\nstderr:\n%s", args, timeout, r.stderr)
	}
	return r
}

var runIDRE = regexp.MustCompile(`run ([0-9a-f]{6}): scenario`)

func runID(t *testing.T, stderr string) string {
	t.Helper()
	m := runIDRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no run id in stderr:\n%s", stderr)
	}
	return m[1]
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (real processes and namespaces): skipped with -short")
	}
}

func TestIntegrationBadInput(t *testing.T) {
	integration(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"run", "no-such.yaml"}, "no-such.yaml: no such file"},
		{"unknown name", []string{"run", "nosuchscenario"}, `"nosuchscenario" is neither a file nor a built-in scenario`},
		{"malformed yaml", []string{"run", "testdata/malformed.yaml"}, "testdata/malformed.yaml:7: invalid YAML"},
		{"unknown field", []string{"run", "testdata/unknown-field.yaml"}, "testdata/unknown-field.yaml:7:3: load.qsp: unknown field"},
		{"unknown mesh", []string{"run", "testdata/unknown-mesh.yaml"}, `testdata/unknown-mesh.yaml:6:11: meshes[1].name: unknown mesh "consul"`},
		{"bad flag value", []string{"run", "--qps", "-1"}, "flag --qps: load.qps: must be greater than 0"},
		{"unparsable flag", []string{"run", "--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{"unknown flag", []string{"run", "--bogus"}, "unknown flag: --bogus"},
		{"bad modes", []string{"run", "--modes", "ambient"}, `invalid --modes: "ambient" matches none of`},
		{"bad network", []string{"run", "--network", "wifi"}, `--network "wifi"`},
		{"unknown platform", []string{"run", "--platform", "mars"}, `flag --platform: platform: unknown platform "mars" (known: local, kind, kube)`},
		{"scenario platform", []string{"run", "testdata/mars-platform.yaml"}, `testdata/mars-platform.yaml:3:11: platform: unknown platform "mars"`},
		{"conformance platform", []string{"conformance", "--suite", "smi", "--platform", "mars"}, `--platform: unknown platform "mars"`},
		{"redirect port", []string{"redirect", "--inbound", "80"}, `--inbound "80": want PORT:TO`},
		{"redirect nothing", []string{"redirect"}, "nothing to redirect: give --inbound, --outbound or --service"},
		{"redirect service", []string{"redirect", "--service", "10.0.0.1:80=10.0.0.2,x"}, `--service "10.0.0.1:80=10.0.0.2,x": endpoint "x"`},
		{"redirect service port", []string{"redirect", "--service", "10.0.0.1=10.0.0.2"}, `--service "10.0.0.1=10.0.0.2": want ADDR:PORT=EP,EP...`},
		{"faults of a gRPC server", []string{"workload", "server", "--protocol", "grpc", "--http-faults-api", "127.0.0.1:0"}, "flag --http-faults-api: a grpc server applies no HTTP faults"},
		{"cluster name", []string{"cluster", "create", "Bad_Name"}, `cluster name "Bad_Name": use lowercase letters, digits and '-'`},
		{"too many args", []string{"run", "a", "b"}, "accepts at most 1 arg(s)"},
		{"validate", []string{"scenarios", "validate", "testdata/unknown-field.yaml"}, "testdata/unknown-field.yaml:7:3"},
		{"show unknown", []string{"scenarios", "show", "nope"}, `no built-in scenario "nope"`},
		{"bad policy", []string{"run", "testdata/bad-policy.yaml"}, `testdata/bad-policy.yaml:19:21: policies[0].spec.backends[0].service: unknown service "app-v9"`},
		{"policy weights", []string{"run", "testdata/bad-policy.yaml"}, `testdata/bad-policy.yaml:19:9: policies[0].spec.backends: the weights add up to 0`},
		{"control plane and load", []string{"run", "testdata/bad-control-plane.yaml"}, `testdata/bad-control-plane.yaml:9:3: load: a control-plane benchmark measures configuration changes, not load`},
		{"control plane clients", []string{"run", "testdata/bad-control-plane.yaml"}, `testdata/bad-control-plane.yaml:6:18: controlPlane.clients[1]: client counts must increase`},
		{"control plane change", []string{"run", "testdata/bad-control-plane.yaml"}, `testdata/bad-control-plane.yaml:7:23: controlPlane.changes[1]: unknown change "secrets"`},
		{"no control plane", []string{"run", "testdata/no-control-plane.yaml"}, `testdata/no-control-plane.yaml:5:5: meshes[1]: nginx/sidecar: mesh nginx has no control plane to benchmark`},
		{"conformance suite", []string{"conformance", "--suite", "istio"}, `flag --suite: unknown suite "istio"`},
		{"conformance mesh", []string{"conformance", "--suite", "smi", "--mesh", "consul"}, `flag --mesh: unknown mesh "consul"`},
		{"conformance modes", []string{"conformance", "--suite", "smi", "--modes", "ambient"}, `invalid --modes: "ambient" matches none of meshbench/sidecar, meshbench/per-node, meshbench/proxyless`},
		{"gate plan rule", []string{"gate", "plan", "testdata", "--gate", "p99:soon"}, `flag --gate: rule "p99:soon": want a signed percentage`},
		{"gate plan detect", []string{"gate", "plan", "testdata", "--detect", "p99:auto"}, `flag --detect: "p99:auto": name a relative change such as p99:+10%`},
		{"gate plan format", []string{"gate", "plan", "testdata", "--format", "pdf"}, `flag --format: "pdf" is not one of table, md, json`},
		{"gate plan args", []string{"gate", "plan"}, "accepts 1 arg(s), received 0"},
		{"unsupported policy", []string{"run", "testdata/unsupported-policy.yaml"}, `testdata/unsupported-policy.yaml:9:5: meshes[1]: haproxy/sidecar cannot express the scenario's policies: mesh haproxy has no traffic policy`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "results")
			args := c.args
			if args[0] == "run" || args[0] == "conformance" {
				args = append(args, "--out", out)
			}
			r := meshbench(t, 30*time.Second, args...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr does not contain %q:\n%s", c.want, r.stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("bad input created the results directory %s", out)
			}
		})
	}
}

func TestCLIBasics(t *testing.T) {
	if r := meshbench(t, 10*time.Second, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "meshbench ") {
		t.Errorf("version: %+v", r)
	}
	r := meshbench(t, 10*time.Second, "scenarios", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "default (default)") || !strings.Contains(r.stdout, "smoke") {
		t.Errorf("scenarios list: %+v", r)
	}
	r = meshbench(t, 10*time.Second, "scenarios", "show", "default")
	if r.code != 0 || !strings.Contains(r.stdout, "apiVersion: meshbench/v1") {
		t.Errorf("scenarios show: %+v", r)
	}
	r = meshbench(t, 10*time.Second, "scenarios", "validate", "../../scenarios/testdata/valid-full.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "valid") {
		t.Errorf("scenarios validate: %+v", r)
	}
	// A built-in by name, as run takes it; a name that is neither says so.
	r = meshbench(t, 10*time.Second, "scenarios", "validate", "gameday-partition", "no-such-scenario")
	if r.code != 2 || !strings.Contains(r.stdout, "gameday-partition: valid") ||
		!strings.Contains(r.stderr, `"no-such-scenario" is neither a file nor a built-in scenario`) {
		t.Errorf("scenarios validate of names: %+v", r)
	}
	r = meshbench(t, 10*time.Second, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "__start_meshbench") {
		t.Errorf("completion bash: code %d", r.code)
	}
	r = meshbench(t, 10*time.Second, "--help")
	if r.code != 0 || strings.Contains(r.stdout, "workload") || strings.Contains(r.stdout, "proxy ") {
		t.Errorf("--help shows process roles or fails:\n%s", r.stdout)
	}
}

func readJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
