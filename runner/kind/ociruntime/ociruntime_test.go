package ociruntime

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestMissingFrom(t *testing.T) {
	// This machine's bounding set: every capability but CAP_SYS_RESOURCE.
	got, err := missingFrom("Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n", 40)
	if err != nil || !slices.Equal(got, []string{"CAP_SYS_RESOURCE"}) {
		t.Errorf("missingFrom = %v, %v", got, err)
	}
	if got, err := missingFrom("CapBnd:\t000001ffffffffff\n", 40); err != nil || len(got) != 0 {
		t.Errorf("full set: missing %v, %v", got, err)
	}
	// A kernel that knows capabilities up to 37 has no 38-40 to grant.
	if got, err := missingFrom("CapBnd:\t0000003fffffffff\n", 37); err != nil || len(got) != 0 {
		t.Errorf("older kernel: missing %v, %v", got, err)
	}
	if _, err := missingFrom("Name:\tx\n", 40); err == nil {
		t.Error("no CapBnd line: no error")
	}
}

const spec = `{"ociVersion":"1.0.2","process":{"args":["/sbin/init"],"rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":1048576}],"capabilities":{` +
	`"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_NET_ADMIN"],"effective":["CAP_SYS_RESOURCE"],` +
	`"permitted":["CAP_CHOWN","CAP_SYS_RESOURCE"]},"oomScoreAdj":0},"root":{"path":"rootfs"},"x-unknown":{"kept":true}}`

func writeSpec(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func capsOf(t *testing.T, path string, bundle bool) (map[string][]string, map[string]any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]any
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	proc := all
	if bundle {
		proc = all["process"].(map[string]any)
	}
	out := map[string][]string{}
	for set, v := range proc["capabilities"].(map[string]any) {
		for _, c := range v.([]any) {
			out[set] = append(out[set], c.(string))
		}
		if out[set] == nil {
			out[set] = []string{}
		}
	}
	return out, all
}

func TestEditCreateAndExec(t *testing.T) {
	drop := []string{"CAP_SYS_RESOURCE"}
	dir := t.TempDir()
	cfg := writeSpec(t, dir, "config.json", spec)
	// dockerd's shim calls: global flags, then the command and its own.
	args := []string{"--root", "/run/docker/runtime-runc/moby", "--log", "log.json", "--log-format", "json",
		"--systemd-cgroup", "create", "--bundle", dir, "--pid-file", "x.pid", "id"}
	if err := Edit(args, drop); err != nil {
		t.Fatal(err)
	}
	caps, all := capsOf(t, cfg, true)
	want := map[string][]string{"bounding": {"CAP_CHOWN", "CAP_NET_ADMIN"}, "effective": {}, "permitted": {"CAP_CHOWN"}}
	for set, w := range want {
		if !slices.Equal(caps[set], w) {
			t.Errorf("%s = %v, want %v", set, caps[set], w)
		}
	}
	if all["x-unknown"] == nil || all["root"] == nil {
		t.Errorf("fields lost: %v", all)
	}
	if data, _ := os.ReadFile(cfg); !bytes.Contains(data, []byte(`"hard":18446744073709551615`)) {
		t.Errorf("RLIM_INFINITY not kept exactly: %s", data)
	}
	// exec: the --process file is the process itself.
	proc := writeSpec(t, dir, "process.json", `{"args":["sh"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}`)
	if err := Edit([]string{"--root", "r", "exec", "--process", proc, "--detach", "id"}, drop); err != nil {
		t.Fatal(err)
	}
	if caps, _ := capsOf(t, proc, false); !slices.Equal(caps["bounding"], []string{"CAP_KILL"}) {
		t.Errorf("exec bounding = %v", caps["bounding"])
	}
	// run -b=... form, and a command with no spec passes through.
	cfg2 := writeSpec(t, t.TempDir(), "config.json", spec)
	if err := Edit([]string{"run", "--bundle=" + filepath.Dir(cfg2), "id"}, drop); err != nil {
		t.Fatal(err)
	}
	if caps, _ := capsOf(t, cfg2, true); slices.Contains(caps["bounding"], "CAP_SYS_RESOURCE") {
		t.Errorf("run --bundle=: bounding still has it: %v", caps["bounding"])
	}
	for _, a := range [][]string{{"--root", "r", "start", "id"}, {"delete", "--force", "id"}, {"--version"}, {}} {
		if err := Edit(a, drop); err != nil {
			t.Errorf("Edit(%v) = %v", a, err)
		}
	}
	if err := Edit([]string{"create", "--bundle", t.TempDir(), "id"}, drop); err == nil {
		t.Error("create with no config.json: no error")
	}
}
