package workload

import (
	"context"
	"os"
	"runtime"
	"time"
)

// StressOptions are a stressor's: CPU workers, each busy for CPULoad
// percent of every period (stress-ng's --cpu-load, which Chaos Mesh's
// StressChaos drives), and memory held (every page written).
type StressOptions struct {
	CPUWorkers  int
	CPULoad     int // percent, 1-100
	MemoryBytes int64
}

// stressPeriod is the CPU workers' duty cycle.
const stressPeriod = 100 * time.Millisecond

// Stress burns and holds until ctx ends.
func Stress(ctx context.Context, o StressOptions) error {
	for range o.CPUWorkers {
		go burn(ctx, o.CPULoad)
	}
	var mem []byte
	if o.MemoryBytes > 0 {
		mem = make([]byte, o.MemoryBytes)
		page := os.Getpagesize()
		for i := 0; i < len(mem); i += page {
			mem[i] = 1
		}
	}
	<-ctx.Done()
	runtime.KeepAlive(mem)
	return nil
}

// burn spins for load percent of each period and sleeps the rest.
func burn(ctx context.Context, load int) {
	busy := stressPeriod * time.Duration(min(max(load, 1), 100)) / 100
	for ctx.Err() == nil {
		start := time.Now()
		for time.Since(start) < busy {
		}
		if rest := stressPeriod - busy; rest > 0 {
			time.Sleep(rest)
		}
	}
}
