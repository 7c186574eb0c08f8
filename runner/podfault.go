package runner

import (
	"fmt"
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
