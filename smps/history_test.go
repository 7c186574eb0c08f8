package smps

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ReadHistory gives back what PublishDir indexed, oldest first, trials
// and all; an index whose paths leave a run's directory is refused.
func TestReadHistory(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "index")
	if _, err := ReadHistory(dest); err == nil || !strings.Contains(err.Error(), "is not a results index") {
		t.Errorf("no index: %v", err)
	}
	t0 := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	for i, id := range []string{"run-b", "run-a", "run-c"} {
		dir, m, trials := fakeRun(t, id, t0.Add(time.Duration([]int{2, 1, 3}[i])*time.Hour))
		if _, err := PublishDir(context.Background(), dir, m, trials, nil, dest); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := ReadHistory(dest)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.Entry.RunID)
		if len(r.Trials) != 2 || r.Trials[1].LatencyMs.P99 != 1 {
			t.Errorf("run %s: %d trials %+v", r.Entry.RunID, len(r.Trials), r.Trials)
		}
	}
	if strings.Join(ids, ",") != "run-a,run-b,run-c" {
		t.Errorf("runs %v, want oldest first", ids)
	}

	idx, _ := ReadIndex(dest)
	for _, bad := range []func(*Index){
		func(x *Index) { x.Runs[0].Documents[0] = "../../../etc/passwd" },
		func(x *Index) { x.Runs[0].Dir = "runs/../.." },
	} {
		c := *idx
		c.Runs = append([]IndexEntry(nil), idx.Runs...)
		c.Runs[0].Documents = append([]string(nil), idx.Runs[0].Documents...)
		bad(&c)
		data, _ := json.Marshal(c)
		if err := os.WriteFile(filepath.Join(dest, IndexFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadHistory(dest); err == nil || !strings.Contains(err.Error(), "leaves the run's directory") && !strings.Contains(err.Error(), "is not runs/<run id>") {
			t.Errorf("unsafe index entry %+v: %v", c.Runs[0], err)
		}
	}
	if err := os.WriteFile(filepath.Join(dest, IndexFile), []byte(`{"runs":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadHistory(dest); err == nil || !strings.Contains(err.Error(), "lists no runs") {
		t.Errorf("empty index: %v", err)
	}
}
