package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// sampleInterval is how often RSS is read during the measured window.
const sampleInterval = 200 * time.Millisecond

// watched is a process whose resource use is sampled.
type watched struct {
	name, class, node string
	// pid is the current incarnation's (a fault may restart a process);
	// nil for a process of another platform.
	pid func() int
	// cgroups are the component's cgroup v1 directories by controller,
	// when the platform made them; figures then come from there.
	cgroups map[string]string
}

var _ runner.UsageMeter = (*platform)(nil)

// MeterUsage measures processes this platform started: from their cgroups
// when they have them (every process they ever had, working sets), else
// from /proc (the process and its descendants). A process of another
// platform is reported by name with no figures.
func (p *platform) MeterUsage(procs []runner.Process) func() []results.Usage {
	w := make([]watched, len(procs))
	for i, rp := range procs {
		w[i].name = rp.Name()
		if pr, ok := rp.(*process); ok {
			w[i].class, w[i].node, w[i].pid, w[i].cgroups = pr.class, pr.node, pr.pid, pr.cgroups
		}
	}
	return startSampler(w).finish
}

// cpuOf reads a component's CPU seconds: from cpuacct.usage when it has a
// cgroup (nanoseconds, every process it ever had), else from /proc.
func (w watched) cpuOf(tree map[int][]int) (float64, string, error) {
	if dir := w.cgroups["cpuacct"]; dir != "" {
		data, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
		if err == nil {
			ns, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
			if err == nil {
				return ns / 1e9, "cgroup v1", nil
			}
		}
	}
	if w.pid == nil {
		return 0, "/proc", errors.New("not a process of this platform")
	}
	v, err := cpuSeconds(w.pid(), tree)
	return v, "/proc", err
}

// workingSetMB is the memory cgroup's usage less inactive file pages.
func (w watched) workingSetMB() (float64, bool) {
	dir := w.cgroups["memory"]
	if dir == "" {
		return 0, false
	}
	usage, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, false
	}
	u, err := strconv.ParseFloat(strings.TrimSpace(string(usage)), 64)
	if err != nil {
		return 0, false
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "total_inactive_file "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				u = max(u-f, 0)
			}
		}
	}
	return u / (1 << 20), true
}

// sampler measures CPU (from the change in utime+stime over the window) and
// RSS (sampled every sampleInterval) of a set of processes, from /proc.
type sampler struct {
	procs []watched
	start time.Time
	cpu0  []float64
	rss   [][]float64
	ws    [][]float64
	stop  chan struct{}
	wg    sync.WaitGroup
	// From /proc, a process restarted in the window (a fault) has CPU
	// in each incarnation: done is what the ended ones used in the
	// window, last the latest reading of the current one (lastPID).
	done, last []float64
	lastPID    []int
	// secs follow the proxies and control planes second by second.
	secs []*perSecond
}

// perSecond follows a component's use second by second: each second's CPU
// is the rate between the samples nearest its edges (sampleInterval
// apart), its memory the largest reading in it.
type perSecond struct {
	k            int // the second being measured
	t0, cpu0, mb float64
	out          []results.UsageSecond
}

// add takes a reading at t seconds into the window: cpu is the CPU seconds
// used since the window started, mb the memory. A reading in a later
// second than the one measured closes it with the CPU up to the reading
// (the memory is the new second's); with last, any reading closes it, its
// memory included.
func (ps *perSecond) add(t, cpu, mb float64, last bool) {
	k := int(t)
	if k <= ps.k || last {
		ps.mb = max(ps.mb, mb)
	}
	if k > ps.k || last {
		if d := t - ps.t0; d > 0 {
			ps.out = append(ps.out, results.UsageSecond{Start: float64(ps.k), CPUMillicores: max(cpu-ps.cpu0, 0) / d * 1000, MemoryMB: ps.mb})
		}
		ps.k, ps.t0, ps.cpu0, ps.mb = k, t, cpu, mb
	}
}

// followed says whose use is kept second by second.
func followed(class string) bool {
	return class == results.ClassProxy || class == results.ClassControlPlane
}

func startSampler(procs []watched) *sampler {
	n := len(procs)
	s := &sampler{procs: procs, start: time.Now(), stop: make(chan struct{}),
		cpu0: make([]float64, n), rss: make([][]float64, n), ws: make([][]float64, n),
		done: make([]float64, n), last: make([]float64, n), lastPID: make([]int, n), secs: make([]*perSecond, n)}
	tree := processTree()
	for i, p := range procs {
		s.cpu0[i], _, _ = p.cpuOf(tree)
		s.last[i] = s.cpu0[i]
		if p.pid != nil {
			s.lastPID[i] = p.pid()
			if followed(p.class) {
				s.secs[i] = &perSecond{}
			}
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			s.sampleRSS(false)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// sampleRSS reads every process's memory (and a followed one's CPU); last
// is the window's final reading.
func (s *sampler) sampleRSS(last bool) {
	tree := processTree()
	t := time.Since(s.start).Seconds()
	for i, p := range s.procs {
		if p.pid == nil {
			continue
		}
		s.followCPU(i, tree)
		mb, err := rssMB(p.pid(), tree)
		if err == nil {
			s.rss[i] = append(s.rss[i], mb)
		}
		if ws, ok := p.workingSetMB(); ok {
			s.ws[i] = append(s.ws[i], ws)
			mb = ws
		}
		if ps := s.secs[i]; ps != nil {
			ps.add(t, s.cpuSoFar(i, tree), mb, last)
		}
	}
}

// cpuSoFar is the CPU seconds a process used since the window started.
func (s *sampler) cpuSoFar(i int, tree map[int][]int) float64 {
	p := s.procs[i]
	if p.cgroups["cpuacct"] != "" {
		if v, _, err := p.cpuOf(tree); err == nil {
			s.last[i] = v
		}
	}
	return s.done[i] + s.last[i] - s.cpu0[i]
}

// followCPU keeps, for a process measured from /proc, the CPU of an
// incarnation that a restart replaced: its last reading less where the
// window started it, and the new one from 0 (it started in the window).
func (s *sampler) followCPU(i int, tree map[int][]int) {
	p := s.procs[i]
	if p.cgroups["cpuacct"] != "" {
		return // the group's figure spans incarnations
	}
	if pid := p.pid(); pid != s.lastPID[i] {
		s.done[i] += s.last[i] - s.cpu0[i]
		s.cpu0[i], s.last[i], s.lastPID[i] = 0, 0, pid
	}
	if v, err := cpuSeconds(s.lastPID[i], tree); err == nil {
		s.last[i] = v
	}
}

// finish ends the window and returns each process's usage.
func (s *sampler) finish() []results.Usage {
	// CPU first: the window ends now, and a process may exit right after.
	wall := time.Since(s.start).Seconds()
	tree := processTree()
	cpu1 := make([]float64, len(s.procs))
	src := make([]string, len(s.procs))
	ok := make([]bool, len(s.procs))
	close(s.stop)
	s.wg.Wait()
	for i, p := range s.procs {
		if p.pid != nil {
			s.followCPU(i, tree)
		}
		var err error
		cpu1[i], src[i], err = p.cpuOf(tree)
		ok[i] = err == nil
	}
	s.sampleRSS(true)
	out := make([]results.Usage, len(s.procs))
	for i, p := range s.procs {
		u := results.Usage{Name: p.name, Class: p.class, Node: p.node, Source: src[i]}
		if ok[i] && wall > 0 {
			u.CPUMillicores = (s.done[i] + cpu1[i] - s.cpu0[i]) / wall * 1000
		}
		for _, v := range s.ws[i] {
			u.WorkingSetMeanMB += v
			u.WorkingSetMaxMB = max(u.WorkingSetMaxMB, v)
		}
		if n := len(s.ws[i]); n > 0 {
			u.WorkingSetMeanMB /= float64(n)
		}
		for _, v := range s.rss[i] {
			u.RSSMeanMB += v
			u.RSSMaxMB = max(u.RSSMaxMB, v)
		}
		if n := len(s.rss[i]); n > 0 {
			u.RSSMeanMB /= float64(n)
		}
		if ps := s.secs[i]; ps != nil {
			u.Seconds = ps.out
		}
		out[i] = u
	}
	return out
}

// cpuSeconds returns the user+system CPU time, in seconds, of the process
// and its descendants (nginx's workers, for one), whose sum is what the
// component costs.
func cpuSeconds(pid int, tree map[int][]int) (float64, error) {
	total, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range descendants(pid, tree) {
		if v, err := procCPU(c); err == nil {
			total += v
		}
	}
	return total, nil
}

// processTree maps each PID to its children, from one scan of /proc.
func processTree() map[int][]int {
	children := map[int][]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if pp, err := parentPID(p); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	return children
}

// descendants lists the PIDs below pid in the process tree.
func descendants(pid int, children map[int][]int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c)
		}
		queue = queue[1:]
	}
	return out
}

func parentPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// statFields returns /proc/<pid>/stat's fields after the command name:
// f[0] is field 3 (state), f[1] field 4 (ppid), f[11] utime, f[12] stime.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return f, nil
}

func procCPU(pid int) (float64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// rssMB returns the resident set size in MiB of the process and its
// descendants. Shared pages (the binary's text) count once per process, as
// they do in every per-process RSS figure.
func rssMB(pid int, tree map[int][]int) (float64, error) {
	total, err := procRSS(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range descendants(pid, tree) {
		if v, err := procRSS(c); err == nil {
			total += v
		}
	}
	return total, nil
}

func procRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					return 0, err
				}
				return kb / 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
