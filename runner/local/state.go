package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// record is what a run's state file says: who owns the run and what it
// created. It is written before each resource is created, so that a crash
// at any point leaves a record at least as large as what exists.
type record struct {
	RunID string `json:"runID"`
	// PID and StartTicks identify the owner process; StartTicks guards
	// against a reused PID.
	PID        int       `json:"pid"`
	StartTicks uint64    `json:"startTicks"`
	Created    time.Time `json:"created"`
	Network    string    `json:"network"`
	// Octet is the third octet of the run's 10.x.<octet>.0/24 subnet or the
	// first of its 127.0.<octet>.0/24 loopback blocks.
	Octet      int        `json:"octet"`
	Octets     int        `json:"octets,omitempty"`
	Bridge     string     `json:"bridge,omitempty"`
	Namespaces []string   `json:"namespaces,omitempty"`
	Links      []string   `json:"links,omitempty"`
	Rules      [][]string `json:"rules,omitempty"`
}

type state struct {
	dir string
	rec record
}

func statePath(dir, runID string) string { return filepath.Join(dir, runID+".json") }

func newState(dir, runID, network string) (*state, error) {
	ticks, err := StartTicks(os.Getpid())
	if err != nil {
		return nil, err
	}
	s := &state{dir: dir, rec: record{RunID: runID, PID: os.Getpid(), StartTicks: ticks,
		Created: time.Now().UTC(), Network: network, Octet: -1}}
	return s, s.save()
}

func (s *state) save() error {
	return results.WriteJSON(statePath(s.dir, s.rec.RunID), s.rec)
}

func (s *state) record() record { return s.rec }

func (s *state) remove() error {
	err := os.Remove(statePath(s.dir, s.rec.RunID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// update applies f to the record and saves it.
func (s *state) update(f func(*record)) error {
	f(&s.rec)
	return s.save()
}

// claimOctets reserves n consecutive third octets not used by a live run
// and records them. Loopback nodes use 127.0.<octet>.1.
func (s *state) claimOctets(n int) (int, error) {
	unlock, err := LockDir(s.dir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	used := map[int]bool{}
	for _, r := range liveRecords(s.dir) {
		if r.RunID == s.rec.RunID || r.Octet < 0 {
			continue
		}
		for i := 0; i < max(r.Octets, 1); i++ {
			used[r.Octet+i] = true
		}
	}
	for base := 10; base+n <= 250; base++ {
		free := true
		for i := 0; i < n; i++ {
			free = free && !used[base+i]
		}
		if free {
			return base, s.update(func(r *record) { r.Octet, r.Octets = base, n })
		}
	}
	return 0, fmt.Errorf("no free address block: too many meshbench runs at once")
}

// liveRecords returns the records of runs whose owner process is alive.
func liveRecords(dir string) []record {
	var out []record
	for _, r := range readRecords(dir) {
		if ownerAlive(r) {
			out = append(out, r)
		}
	}
	return out
}

func readRecords(dir string) []record {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var out []record
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(data, &r) != nil || !validRunID(r.RunID) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func ownerAlive(r record) bool { return OwnerAlive(r.PID, r.StartTicks) }

// OwnerAlive says whether the process pid that started at startTicks
// (StartTicks) still runs: a state file's owner, for every platform.
func OwnerAlive(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	ticks, err := StartTicks(pid)
	return err == nil && ticks == startTicks
}

// StartTicks is field 22 of /proc/<pid>/stat: when the process started.
func StartTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// LockDir takes an exclusive lock on a state directory (its .lock file),
// so that runs starting together do not claim the same addresses, or
// count shared things wrong; the returned function releases it.
func LockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
