package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// The pod faults (PodChaos) every platform executes alike: its pods'
// processes stopped and resumed, or killed and started again as
// Kubernetes would start them.

// ExecSignals is the executor of a pod failure: the pod's processes
// (each its process group) stopped with SIGSTOP and resumed with SIGCONT.
const ExecSignals = "SIGSTOP/SIGCONT"

// PodReplaceDelay is how long after a pod-kill the pod's processes start
// again: the time a Deployment's replacement pod takes to be scheduled
// and started when its image is on the node.
const PodReplaceDelay = time.Second

// Executors of the kills.
var (
	ExecPodKill       = fmt.Sprintf("SIGKILL, the pod started again %s later (its replacement)", PodReplaceDelay)
	ExecContainerKill = "SIGKILL, the container started again with the kubelet's back-off (0, 10 s, 20 s ... 5 min)"
)

// RestartBackoff is how long a kubelet waits before it starts a killed
// container again that it has restarted restarts times already: at once
// the first time, then 10 s doubling up to 5 minutes (the kubelet's
// container restart back-off).
func RestartBackoff(restarts int) time.Duration {
	if restarts <= 0 {
		return 0
	}
	return min(10*time.Second<<min(restarts-1, 5), 5*time.Minute)
}

// ContainerOf is the container of its pod a process of class is, as a
// container-kill names it: the application, or the proxy (its sidecar).
func ContainerOf(class string) string {
	if class == results.ClassApp {
		return scenarios.ContainerApp
	}
	return scenarios.ContainerProxy
}

// CheckContainerKill checks a container-kill's containerNames against
// the containers of a platform's pods.
func CheckContainerKill(names []string, platform string) error {
	if len(names) == 0 {
		return fmt.Errorf("containerNames is required (%s, %s)", scenarios.ContainerApp, scenarios.ContainerProxy)
	}
	for _, n := range names {
		if n != scenarios.ContainerApp && n != scenarios.ContainerProxy {
			return fmt.Errorf("no container %q in the %s platform's pods (%s, %s)", n, platform, scenarios.ContainerApp, scenarios.ContainerProxy)
		}
	}
	return nil
}

// PodProcesses are, pod by pod, the injection's processes (of the
// platform's type P) that keep selects, and the workloads whose pods
// have none.
func PodProcesses[P Process](in Injection, keep func(P) bool) (pods [][]P, none []string, err error) {
	for _, pod := range in.Pods {
		var procs []P
		for _, rp := range pod.Processes {
			pr, ok := rp.(P)
			if !ok {
				return nil, nil, fmt.Errorf("%s is not a process of this platform", rp.Name())
			}
			if keep(pr) {
				procs = append(procs, pr)
			}
		}
		if len(procs) == 0 {
			none = append(none, pod.Workload)
		}
		pods = append(pods, procs)
	}
	return pods, none, nil
}

// KillVictims are the processes a pod-kill (podKill: every process of
// the pods) or a container-kill (those of the containers named, by their
// class) kills, with what the injection reports: its executor, and the
// pods with nothing to kill.
func KillVictims[P Process](in Injection, podKill bool, containers []string, class func(P) string) ([]P, Injected, error) {
	got := Injected{Executor: ExecPodKill}
	if !podKill {
		got.Executor = ExecContainerKill
	}
	pods, empty, err := PodProcesses(in, func(pr P) bool {
		return podKill || slices.Contains(containers, ContainerOf(class(pr)))
	})
	if err != nil {
		return nil, got, err
	}
	if len(empty) > 0 {
		got.Note = fmt.Sprintf("nothing to kill in the pod of %s", strings.Join(empty, ", "))
	}
	return slices.Concat(pods...), got, nil
}

// FailPods stops every running process of the injection's pods with
// pause, and returns the injection whose recovery resumes them all. On
// error it resumes what it stopped.
func FailPods[P Process](in Injection, pause func(P) (resume func() error, err error)) (Injected, error) {
	got := Injected{Executor: ExecSignals}
	pods, empty, err := PodProcesses(in, func(pr P) bool {
		select {
		case <-pr.Done(): // ended for good
			return false
		default:
			return true
		}
	})
	if err != nil {
		return got, err
	}
	if len(empty) > 0 {
		got.Note = fmt.Sprintf("no running process to stop in the pod of %s", strings.Join(empty, ", "))
	}
	procs := slices.Concat(pods...)
	if len(procs) == 0 {
		return got, nil
	}
	var resumes []func() error
	resume := func(context.Context) error {
		var errs []error
		for _, r := range resumes {
			errs = append(errs, r())
		}
		return errors.Join(errs...)
	}
	for _, pr := range procs {
		r, err := pause(pr)
		if r != nil {
			resumes = append(resumes, r)
		}
		if err != nil {
			return got, errors.Join(err, resume(context.Background()))
		}
	}
	got.Recover = resume
	return got, nil
}
