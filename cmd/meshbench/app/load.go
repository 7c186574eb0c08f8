package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/meshbench/meshbench/cmd/internal/role"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/smps"
)

// loadResults reads what compare and report accept: a results directory
// (with its manifest), a directory holding SMPS result documents
// (smp-result.json files, at any depth), or SMPS result files. The
// manifest is nil for SMPS input.
func loadResults(paths ...string) (*results.Manifest, []*results.Trial, error) {
	if len(paths) == 1 {
		if _, err := os.Stat(filepath.Join(paths[0], results.ManifestFile)); err == nil {
			m, err := results.ReadManifest(paths[0])
			if err != nil {
				return nil, nil, err
			}
			trials, err := results.ReadTrials(paths[0])
			if err != nil {
				return nil, nil, err
			}
			if len(trials) == 0 && len(m.Max) == 0 && len(m.ControlPlane) == 0 {
				return nil, nil, fmt.Errorf("%s: no finished trials", paths[0])
			}
			return m, trials, nil
		}
	}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && d.Name() == results.SMPResultFile {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%v: neither a results directory (no %s) nor SMPS results (no %s)", paths, results.ManifestFile, results.SMPResultFile)
	}
	var trials []*results.Trial
	for _, f := range files {
		res, err := smps.ReadResult(f)
		if err != nil {
			return nil, nil, err
		}
		t, err := smps.TrialFromResult(res)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		trials = append(trials, t)
	}
	return nil, trials, nil
}

// badResults marks results given to read (compare, report, publish) that
// are missing, malformed or empty: bad input, exit 2, as for every other
// command; exit 1 stays the verdict's.
func badResults(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return badInput(err)
	}
	return &role.BadInputError{Err: err, File: true}
}
