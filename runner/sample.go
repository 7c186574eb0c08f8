package runner

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

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
	pid               int
}

// sampler measures CPU (from the change in utime+stime over the window) and
// RSS (sampled every sampleInterval) of a set of processes, from /proc.
type sampler struct {
	procs []watched
	start time.Time
	cpu0  []float64
	rss   [][]float64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startSampler(procs []watched) *sampler {
	s := &sampler{procs: procs, start: time.Now(), stop: make(chan struct{}),
		cpu0: make([]float64, len(procs)), rss: make([][]float64, len(procs))}
	for i, p := range procs {
		s.cpu0[i], _ = cpuSeconds(p.pid)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			s.sampleRSS()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) sampleRSS() {
	for i, p := range s.procs {
		if mb, err := rssMB(p.pid); err == nil {
			s.rss[i] = append(s.rss[i], mb)
		}
	}
}

// finish ends the window and returns each process's usage.
func (s *sampler) finish() []results.Usage {
	close(s.stop)
	s.wg.Wait()
	s.sampleRSS()
	wall := time.Since(s.start).Seconds()
	out := make([]results.Usage, len(s.procs))
	for i, p := range s.procs {
		u := results.Usage{Name: p.name, Class: p.class, Node: p.node, Source: "/proc"}
		if cpu1, err := cpuSeconds(p.pid); err == nil && wall > 0 {
			u.CPUMillicores = (cpu1 - s.cpu0[i]) / wall * 1000
		}
		for _, v := range s.rss[i] {
			u.RSSMeanMB += v
			u.RSSMaxMB = max(u.RSSMaxMB, v)
		}
		if n := len(s.rss[i]); n > 0 {
			u.RSSMeanMB /= float64(n)
		}
		out[i] = u
	}
	return out
}

// cpuSeconds returns the process's user+system CPU time in seconds.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// rssMB returns the process's resident set size in MiB.
func rssMB(pid int) (float64, error) {
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
