package scenarios

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected-error golden files")

func TestLoadValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid-*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			s, err := LoadFile(f)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if s.Trials < 1 || s.Load.Connections < 1 || s.Platform != "local" {
				t.Errorf("defaults not filled: %+v", s)
			}
		})
	}
}

func TestLoadFullValues(t *testing.T) {
	s, err := LoadFile("testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"client", s.Topology.Client.Name, "web"},
		{"server", s.Topology.Server.Name, "api"},
		{"payload", s.Topology.Server.PayloadSize, ByteSize(4096)},
		{"serviceTime", s.Topology.Server.ServiceTime, Duration(time.Millisecond)},
		{"qps", s.Load.QPS, 250.5},
		{"connections", s.Load.Connections, 4},
		{"warmup explicitly 0", s.Load.Warmup, Duration(0)},
		{"requestSize", s.Load.RequestSize, ByteSize(512)},
		{"trials", s.Trials, 2},
		{"modes", s.Meshes[1], MeshRef{Name: "meshbench", Mode: Sidecar}},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if p := s.Pos("load.qps"); p.Line != 19 || p.Column != 8 {
		t.Errorf("Pos(load.qps) = %v, want line 19 column 8", p)
	}
}

func TestLoadMinimalDefaults(t *testing.T) {
	s, err := LoadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Load.Warmup != DefaultWarmup || s.Trials != DefaultTrials || s.Load.Protocol != "http" ||
		s.Topology.Client.Name != DefaultClientName || s.Topology.Server.Name != DefaultServerName {
		t.Errorf("defaults not applied: %+v", s)
	}
}

// TestLoadInvalid checks each invalid file's full error text against its
// golden file testdata/invalid-*.err (refresh with -update).
func TestLoadInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/invalid-*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadFile(f)
			if err == nil {
				t.Fatal("LoadFile succeeded, want an error")
			}
			if _, ok := err.(ErrorList); !ok {
				t.Errorf("error is %T, want ErrorList", err)
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", rerr)
			}
			if got != string(want) {
				t.Errorf("error text mismatch\n got:\n%s\nwant:\n%s", got, want)
			}
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				if !strings.HasPrefix(line, f+":") {
					t.Errorf("error line does not start with the file name: %q", line)
				}
			}
		})
	}
}

func TestBuiltinsValid(t *testing.T) {
	bs := Builtins()
	if len(bs) < 2 {
		t.Fatalf("want at least default and smoke, got %d", len(bs))
	}
	for _, b := range bs {
		s, err := LoadBuiltin(b.Name)
		if err != nil {
			t.Errorf("builtin %s: %v", b.Name, err)
			continue
		}
		if s.Name != b.Name || b.Description == "" {
			t.Errorf("builtin %s: name %q, description %q", b.Name, s.Name, b.Description)
		}
	}
	if !IsBuiltin(DefaultName) {
		t.Error("no default scenario")
	}
}

func TestOverrideNamesFlag(t *testing.T) {
	s, err := LoadBuiltin(DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	s.Load.QPS = -1
	s.Override("load.qps", "qps")
	err = s.Validate()
	if err == nil || !strings.Contains(err.Error(), "flag --qps: load.qps: must be greater than 0") {
		t.Errorf("error = %v, want it to name flag --qps", err)
	}
}

func TestByteSize(t *testing.T) {
	cases := []struct {
		in, tag string
		want    ByteSize
		bad     bool
	}{
		{"1024", "!!int", 1024, false},
		{"1KiB", "!!str", 1024, false},
		{"2MiB", "!!str", 2 << 20, false},
		{"4KB", "!!str", 4000, false},
		{"10B", "!!str", 10, false},
		{"-1", "!!int", 0, true},
		{"big", "!!str", 0, true},
		{"1.5", "!!float", 0, true},
	}
	for _, c := range cases {
		var b ByteSize
		err := b.decodeScalar(c.in, c.tag)
		if (err != nil) != c.bad || (!c.bad && b != c.want) {
			t.Errorf("ByteSize(%q) = %d, %v; want %d, bad=%v", c.in, b, err, c.want, c.bad)
		}
	}
}

func TestChainAndMaxSearch(t *testing.T) {
	s, err := LoadFile("testdata/valid-chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svcs := s.Topology.ServiceList()
	if len(svcs) != 4 || svcs[1].ServiceTime != Duration(time.Millisecond) || svcs[3].PayloadSize != 2048 {
		t.Errorf("services %+v", svcs)
	}
	if got, want := s.Topology.Shape(), "client>front, front>middle, middle>back-a, middle>back-b"; got != want {
		t.Errorf("shape %q, want %q", got, want)
	}
	if got := s.Topology.Workloads(); len(got) != 5 || got[0] != "client" {
		t.Errorf("workloads %v", got)
	}
	m := s.Load.Max
	if m == nil || m.Start != 200 || m.Limit != 4000 || m.Precision != 0.05 || m.MaxProbes != DefaultMaxProbes ||
		m.SLO.P99 != Duration(5*time.Millisecond) || m.SLO.ErrorRate != 0.001 || m.SLO.MinAchieved != DefaultSLOMinAchieved {
		t.Errorf("max search %+v", m)
	}
	if got := s.RateList(); len(got) != 1 || got[0] != 200 {
		t.Errorf("a search calibrates at its start rate, got %v", got)
	}
	if got, want := m.SLO.String(), "p99 <= 5ms, errors <= 0.1%, achieved >= 95%"; got != want {
		t.Errorf("SLO %q, want %q", got, want)
	}
}

func TestObjectives(t *testing.T) {
	for text, want := range map[string]Objective{
		"p99 < 2ms at 1000 rps":                     {Metric: "p99", Op: "<", Value: 2, Rate: 1000},
		"mem <= 200":                                {Metric: "mem", Op: "<=", Value: 200},
		"mem < 1GiB for haproxy/per-node":           {Metric: "mem", Op: "<", Value: 1024, Mesh: "haproxy", Mode: "per-node"},
		"error-rate < 0.1%":                         {Metric: "error-rate", Op: "<", Value: 0.001},
		"cpu <= 250m for sidecar":                   {Metric: "cpu", Op: "<=", Value: 250, Mode: "sidecar"},
		"added-p99 <= 500us at 500 rps for sidecar": {Metric: "added-p99", Op: "<=", Value: 0.5, Rate: 500, Mode: "sidecar"},
	} {
		got, err := ParseObjective(text)
		want.Text = text
		if err != nil || got != want {
			t.Errorf("ParseObjective(%q) = %+v, %v; want %+v", text, got, err, want)
		}
	}
	o, _ := ParseObjective("errors == 0")
	if !o.Holds(0) || o.Holds(1) || !o.Applies("any", "mode", 5) {
		t.Errorf("errors == 0: %+v", o)
	}
}

// InsertMesh moves the positions of the meshes after the new one along,
// and errors about the new one name the flag.
func TestInsertMeshKeepsPositions(t *testing.T) {
	s, err := LoadBuiltin("gc-policy")
	if err != nil {
		t.Fatal(err)
	}
	before := s.Pos("meshes[2].proxy")
	last := s.Pos("meshes[4]")
	s.InsertMesh(2, MeshRef{Name: "meshbench", Mode: Sidecar, As: "x"}, "candidate-binary")
	if got := s.Pos("meshes[3].proxy"); got != before || before.Line == 0 {
		t.Errorf("meshes[3].proxy at %+v, want %+v (meshes[2].proxy before)", got, before)
	}
	if got := s.Pos("meshes[5]"); got != last {
		t.Errorf("meshes[5] at %+v, want %+v", got, last)
	}
	if got := s.Pos("meshes[2].as"); got.File != "flag --candidate-binary" {
		t.Errorf("the inserted mesh is at %+v, want the flag", got)
	}
	if s.Meshes[2].As != "x" || s.Meshes[3].As != "meshbench-gogc400" || len(s.Meshes) != 6 {
		t.Errorf("meshes after the insert: %+v", s.Meshes)
	}
}
