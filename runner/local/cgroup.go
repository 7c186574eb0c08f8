package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// cgroupRoot is where cgroup v1 hierarchies are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// cgroupControllers are the v1 hierarchies a component joins: cpuacct for
// CPU time, memory for usage and working set.
var cgroupControllers = []string{"cpuacct", "memory"}

// cgroupsV1 reports whether the v1 cpuacct and memory hierarchies are
// mounted and writable (root).
func cgroupsV1() bool {
	if os.Geteuid() != 0 {
		return false
	}
	for _, c := range cgroupControllers {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c, "cgroup.procs")); err != nil {
			return false
		}
	}
	return true
}

// runCgroup is a run's parent group in one hierarchy; its name carries the
// run id, so leftovers of dead runs can be found.
func runCgroup(controller, runID string) string {
	return filepath.Join(cgroupRoot, controller, "meshbench-"+runID)
}

// makeCgroups creates a component's groups under the run's, one per
// controller, and returns their directories.
func makeCgroups(runID, name string) (map[string]string, error) {
	paths := map[string]string{}
	for _, c := range cgroupControllers {
		dir := filepath.Join(runCgroup(c, runID), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		paths[c] = dir
	}
	return paths, nil
}

// removeCgroups removes a run's groups, leaves first. Groups with live
// processes cannot be removed; the caller stops the processes first.
func removeCgroups(runID string) error {
	var errs []error
	for _, c := range cgroupControllers {
		root := runCgroup(c, runID)
		entries, err := os.ReadDir(root)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				if err := os.Remove(filepath.Join(root, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		if err := os.Remove(root); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupRunIDs lists the run ids that have groups.
func cgroupRunIDs() []string {
	var ids []string
	for _, c := range cgroupControllers {
		entries, _ := os.ReadDir(filepath.Join(cgroupRoot, c))
		for _, e := range entries {
			if id, ok := strings.CutPrefix(e.Name(), "meshbench-"); ok && e.IsDir() && validRunID(id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}
