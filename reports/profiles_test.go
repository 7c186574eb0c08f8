package reports

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/meshbench/meshbench/runner/results"
)

// writeProfile writes a profile of one sample type whose samples are
// (stack, value) pairs, stacks innermost first.
func writeProfile(t *testing.T, path string, types []string, samples map[string][]int64) {
	t.Helper()
	p := &profile.Profile{PeriodType: &profile.ValueType{Type: types[0], Unit: "count"}, Period: 1}
	for _, typ := range types {
		p.SampleType = append(p.SampleType, &profile.ValueType{Type: typ, Unit: "count"})
	}
	funcs := map[string]*profile.Function{}
	locs := map[string]*profile.Location{}
	for stack, values := range samples {
		var ls []*profile.Location
		for _, name := range strings.Split(stack, ";") {
			if locs[name] == nil {
				funcs[name] = &profile.Function{ID: uint64(len(funcs) + 1), Name: name}
				p.Function = append(p.Function, funcs[name])
				locs[name] = &profile.Location{ID: uint64(len(locs) + 1), Line: []profile.Line{{Function: funcs[name]}}}
				p.Location = append(p.Location, locs[name])
			}
			ls = append(ls, locs[name])
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: ls, Value: values})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
}

func TestSummarizeProfiles(t *testing.T) {
	dir := t.TempDir()
	tdir := filepath.Join(dir, "trials", "t1")
	if err := os.MkdirAll(filepath.Join(tdir, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	// 6 s of CPU: 1 s collecting garbage, 3 s in write(2) under the
	// handler, 2 s in the handler's own code.
	writeProfile(t, filepath.Join(tdir, "profiles", "p.cpu.pb.gz"), []string{"samples", "cpu"}, map[string][]int64{
		"runtime.gcDrain;runtime.gcBgMarkWorker":                   {100, 1e9},
		"syscall.write;proxy.(*listener).ServeHTTP;net/http.serve": {300, 3e9},
		"proxy.(*listener).ServeHTTP;net/http.serve":               {200, 2e9},
	})
	heapTypes := []string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}
	writeProfile(t, filepath.Join(tdir, "profiles", "p.heap-start.pb.gz"), heapTypes, map[string][]int64{
		"init.a": {500, 1 << 20, 10, 1 << 20},
	})
	// 2000 allocations in the window: 1500 by textproto, 500 by the
	// handler; 3 MiB in use at its end.
	writeProfile(t, filepath.Join(tdir, "profiles", "p.heap.pb.gz"), heapTypes, map[string][]int64{
		"init.a": {500, 1 << 20, 10, 1 << 20},
		"net/textproto.readMIMEHeader;proxy.(*listener).ServeHTTP": {1500, 1 << 20, 10, 1 << 20},
		"proxy.(*listener).ServeHTTP":                              {500, 1 << 20, 10, 1 << 20},
	})
	tr := &results.Trial{Mesh: "meshbench", Mode: "sidecar", Trial: 1, Requested: 1000, Requests: 100, Path: "trials/t1",
		Profiles: []results.Profile{{Proxy: "p", CPU: "profiles/p.cpu.pb.gz", Seconds: 9, HeapStart: "profiles/p.heap-start.pb.gz", Heap: "profiles/p.heap.pb.gz"}}}
	missing := &results.Trial{Mesh: "meshbench", Mode: "sidecar", Trial: 2, Requested: 1000, Requests: 100,
		Profiles: []results.Profile{{Proxy: "q", Error: "cpu: refused"}}}
	got := SummarizeProfiles(dir, GroupTrials([]*results.Trial{tr, missing}))
	if len(got) != 1 {
		t.Fatalf("got %d summaries", len(got))
	}
	s := got[0]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if s.Profiles != 1 || !near(s.CPUSeconds, 6) || s.Seconds != 9 || !near(s.AllocsPerRequest, 20) || !near(s.HeapInUseMB, 3) {
		t.Errorf("summary: %+v", s)
	}
	shares := map[string]float64{}
	for _, sh := range s.Shares {
		shares[sh.Name] = sh.Fraction
	}
	if !near(shares["garbage collection"], 1.0/6) || !near(shares["system calls"], 0.5) || !near(shares["other"], 1.0/3) {
		t.Errorf("shares: %+v", s.Shares)
	}
	if s.Top[0].Name != "syscall.write" || !near(s.Top[0].Fraction, 0.5) {
		t.Errorf("top: %+v", s.Top)
	}
	if s.TopAllocs[0].Name != "net/textproto.readMIMEHeader" || !near(s.TopAllocs[0].Fraction, 0.75) {
		t.Errorf("top allocations: %+v", s.TopAllocs)
	}
	if len(s.Errors) != 1 || !strings.Contains(s.Errors[0], "trial 2, q: cpu: refused") {
		t.Errorf("errors: %q", s.Errors)
	}
	svg := flameSVG(s.flame)
	if !strings.Contains(svg, "proxy.(*listener).ServeHTTP: 83.33%") || !strings.Contains(svg, "runtime.gcBgMarkWorker: 16.67%") {
		t.Errorf("flame graph:\n%s", svg)
	}
}
