package smps

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/meshbench/meshbench/runner/results"
)

// PublishedRun is one run of a results index with its trials, read back
// from its SMPS results.
type PublishedRun struct {
	Entry  IndexEntry
	Trials []*results.Trial
}

// ReadHistory reads every run of the results index in dir (what
// PublishDir writes), oldest first. An index entry whose paths leave its
// run's directory is refused: index.json is input like any other.
func ReadHistory(dir string) ([]PublishedRun, error) {
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); err != nil {
		return nil, fmt.Errorf("%s is not a results index (no %s): runs get there with `meshbench publish RESULTS --to %s`", dir, IndexFile, dir)
	}
	idx, err := ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	if len(idx.Runs) == 0 {
		return nil, fmt.Errorf("%s: the results index lists no runs", filepath.Join(dir, IndexFile))
	}
	var runs []PublishedRun
	for _, e := range idx.Runs {
		if !runIDRE.MatchString(e.RunID) || e.Dir != "runs/"+e.RunID {
			return nil, fmt.Errorf("%s: run %q: directory %q is not runs/<run id>", filepath.Join(dir, IndexFile), e.RunID, e.Dir)
		}
		run := PublishedRun{Entry: e}
		for _, d := range e.Documents {
			if !filepath.IsLocal(d) {
				return nil, fmt.Errorf("%s: run %s: document path %q leaves the run's directory", filepath.Join(dir, IndexFile), e.RunID, d)
			}
			if path.Base(d) != results.SMPResultFile {
				continue
			}
			f := filepath.Join(dir, filepath.FromSlash(e.Dir), filepath.FromSlash(d))
			res, err := ReadResult(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			t, err := TrialFromResult(res)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			run.Trials = append(run.Trials, t)
		}
		runs = append(runs, run)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		a, b := runs[i].Entry, runs[j].Entry
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.RunID < b.RunID
	})
	return runs, nil
}
