package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/kind/images"
	"github.com/meshbench/meshbench/runner/kind/podproc"
)

// Bounds of a process's life on the platform.
const (
	startTimeout = 2 * time.Minute
	// exitReportWait is how long after the kubelet reports a container
	// ended the platform waits for the wrapper's report.
	exitReportWait = 2 * time.Second
	tailInterval   = 50 * time.Millisecond
	// killWait bounds the wait for a process after SIGKILL was asked for.
	killWait = 10 * time.Second
	// runToEndTimeout bounds a redirect's installation or removal.
	runToEndTimeout = 2 * time.Minute
)

// wrapper is the command line of the process wrapper with args.
func (p *platform) wrapper(args ...string) []string {
	if p.o.Wrapper {
		return append([]string{images.WrapperPath}, args...)
	}
	return append([]string{images.BinaryPath, "pod-process"}, args...)
}

// StartProcess adds the process to its node's pod as an ephemeral
// container, or gives it its container where the pod was made for the
// deployment (Prepare), and returns once it runs (or has ended). A
// process that did not start is told (through its control file) never
// to, should the kubelet start it later.
func (p *platform) StartProcess(ctx context.Context, node string, spec runner.ProcessSpec) (runner.Process, error) {
	return p.start(ctx, node, spec, false)
}

// start starts a process on node: in its container where the node's pod
// was made for the deployment with one for it (the redirect's init
// container, with redirect), else as an ephemeral container.
func (p *platform) start(ctx context.Context, node string, spec runner.ProcessSpec, redirect bool) (runner.Process, error) {
	command := spec.Command
	switch {
	case command == meshes.ProxyCommand && p.o.Proxy:
		command = images.ProxyPath
	case command == "" || command == meshes.ProxyCommand:
		// The meshbench binary, whose proxy subcommand takes
		// meshbench-proxy's arguments.
		command = images.BinaryPath
	}
	argv := []string{command}
	if spec.CPUs != "" {
		// Pinned as on the local platform: no CPU manager policy confines
		// the pods, so the CPU list is the host's.
		argv = []string{"taskset", "-c", spec.CPUs, command}
	}
	// Registered, and counted for Down to wait for, in the same critical
	// section as the check that the platform is not going down.
	p.mu.Lock()
	pod, ok := p.pods[node]
	if p.down || !ok {
		p.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("%s: no node %s", spec.Name, node)
		}
		return nil, errors.New("platform is down")
	}
	var cname string
	if m := p.made[node]; m != nil {
		cname = m.take(spec.Name, redirect)
	}
	template := cname != ""
	if !template {
		p.seq++
		cname = dnsLabel(fmt.Sprintf("%s-%d", trimLabel(spec.Name, 50), p.seq))
	}
	pr := &process{p: p, name: spec.Name, class: spec.Class, pod: pod.Name, node: pod.Spec.NodeName, meshNode: node, container: cname,
		base: filepath.Join(p.ctl, cname), stdout: orDiscard(spec.Stdout), stderr: orDiscard(spec.Stderr),
		started: make(chan struct{}), ended: make(chan struct{}), done: make(chan struct{})}
	p.procs[pod.Name+"/"+cname] = pr
	p.follows.Add(1) // the follow goroutine, or abandon
	p.mu.Unlock()
	if template {
		if err := podproc.WriteArgv(pr.base, append(argv, spec.Args...)); err != nil {
			return nil, pr.abandon(fmt.Errorf("start %s in pod %s: %w", spec.Name, pod.Name, err))
		}
	} else if err := p.addContainer(ctx, node, pod, pr, argv, spec.Args); err != nil {
		return nil, pr.abandon(err)
	}
	if err := pr.waitStarted(ctx); err != nil {
		return nil, pr.abandon(fmt.Errorf("%s (container %s of pod %s): %w", spec.Name, cname, pod.Name, err))
	}
	go pr.follow()
	return pr, nil
}

// addContainer adds pr's container to its node's pod as an ephemeral
// container running argv with args.
func (p *platform) addContainer(ctx context.Context, node string, pod *corev1.Pod, pr *process, argv, args []string) error {
	cname := pr.container
	ec := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: cname, Image: p.o.Image, ImagePullPolicy: corev1.PullNever,
		Command:         append(p.wrapper("--control", p.ctl, "--name", cname, "--"), argv...),
		Args:            args,
		VolumeMounts:    []corev1.VolumeMount{{Name: "share", MountPath: p.o.Share}},
		SecurityContext: &corev1.SecurityContext{Capabilities: processCaps()},
	}}
	pods := p.client.cs.CoreV1().Pods(p.ns)
	var updated *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, ec)
		updated, err = pods.UpdateEphemeralContainers(ctx, pod.Name, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		if tooLarge(err) {
			err = fmt.Errorf("%w: pod %s holds every process this run started on node %s as an ephemeral container, which Kubernetes cannot remove, and the API server's store (etcd) keeps no object over about %d KiB: split the run (fewer --trials or --modes per run)", err, pod.Name, node, objectLimit>>10)
		}
		return fmt.Errorf("start %s in pod %s: %w", pr.name, pod.Name, err)
	}
	p.watchSize(node, updated)
	return nil
}

// objectLimit is etcd's default bound on a request (--max-request-bytes,
// 1.5 MiB), which bounds an object the API server stores; objectWarn is
// the size of a pod past which the run warns (once per node) that it is
// nearing it.
const (
	objectLimit = 3 << 19
	objectWarn  = 1 << 20
)

// tooLarge says whether the API server refused an update because its
// store would not take the object.
func tooLarge(err error) bool {
	return apierrors.IsRequestEntityTooLargeError(err) || strings.Contains(err.Error(), "request is too large")
}

// watchSize warns, once per node, when the node's pod, as an update
// returned it, nears the size the API server's store takes: every process
// of the run adds an ephemeral container (about 1.4 KB of JSON, spec and
// status, measured on kind) for good.
func (p *platform) watchSize(node string, pod *corev1.Pod) {
	if pod == nil {
		return
	}
	// Its protobuf encoding, as the API server stores it.
	size := pod.Size()
	if size < objectWarn {
		return
	}
	p.mu.Lock()
	warned := p.sizeWarned[node]
	if p.sizeWarned == nil {
		p.sizeWarned = map[string]bool{}
	}
	p.sizeWarned[node] = true
	p.mu.Unlock()
	if !warned {
		n := len(pod.Spec.EphemeralContainers)
		p.o.Log.Logf("warning: node %s's pod %s is %d KiB with %d ephemeral containers (one per process started; Kubernetes cannot remove them); the API server's store keeps no object over about %d KiB, so at most about %d more processes fit on that node in this run", node, pod.Name, size>>10, n, objectLimit>>10, max(0, (objectLimit-size)*n/size))
	}
}

// waitStarted waits until the container runs: the watch says so, or the
// wrapper's files are there (should the watch be failing).
func (pr *process) waitStarted(ctx context.Context) error {
	t := time.NewTicker(tailInterval)
	defer t.Stop()
	deadline := time.After(startTimeout)
	for {
		if _, err := os.Stat(pr.base + podproc.CtlStdout); err == nil {
			return nil
		}
		select {
		case <-pr.started:
			return nil
		case <-pr.ended:
			// Over already: fine if the wrapper ran it.
			if _, err := os.Stat(pr.base + podproc.CtlExit); err == nil {
				return nil
			}
			return errors.New(pr.why())
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("did not start within %s", startTimeout)
		case <-t.C:
		}
	}
}

// runToEnd runs a meshbench command in node's pod (in its redirect's init
// container with redirect) and waits (bounded) for it to succeed.
func (p *platform) runToEnd(ctx context.Context, node, name string, args []string, redirect bool) error {
	ctx, cancel := context.WithTimeout(ctx, runToEndTimeout)
	defer cancel()
	var out bytes.Buffer
	pr, err := p.start(ctx, node, runner.ProcessSpec{Name: name, Args: args, Stdout: &out, Stderr: &out}, redirect)
	if err != nil {
		return err
	}
	select {
	case <-pr.Done():
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runner.DefaultStopTimeout)
		defer cancel()
		_ = pr.Stop(sctx)
		return fmt.Errorf("%s on node %s: %w", name, node, ctx.Err())
	}
	if err := pr.Err(); err != nil {
		return fmt.Errorf("%s on node %s: %v: %s", name, node, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// watch follows the run's pods with an informer (client-go's list and
// watch, relisting as it must): it marks containers started, and ends the
// processes the wrapper cannot report on (a container that did not start,
// a pod that is gone). It lasts as long as the platform.
func (p *platform) watch() {
	defer p.follows.Done()
	lw := cache.NewListWatchFromClient(p.client.watchClient.CoreV1().RESTClient(), "pods", p.ns, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.applyObject(obj, false) },
		UpdateFunc: func(_, obj any) { p.applyObject(obj, false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			p.applyObject(obj, true)
		},
	})
	if err != nil {
		p.o.Log.Logf("watch the run's pods: %v", err)
		return
	}
	inf.Run(p.ctx.Done())
}

func (p *platform) applyObject(obj any, deleted bool) {
	if pod, ok := obj.(*corev1.Pod); ok {
		p.apply(pod, deleted)
	}
}

// apply takes a pod's state of its processes' containers (ephemeral, or
// a made pod's init containers); a deleted or finished pod ends all of
// its processes.
func (p *platform) apply(pod *corev1.Pod, deleted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if deleted || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		why := fmt.Sprintf("pod %s ended (%s)", pod.Name, pod.Status.Phase)
		if deleted {
			why = fmt.Sprintf("pod %s was deleted", pod.Name)
		}
		for _, pr := range p.procs {
			if pr.pod == pod.Name {
				pr.end(why)
			}
		}
		return
	}
	// (A made pod's processes run in its init containers.)
	for _, s := range slices.Concat(pod.Status.EphemeralContainerStatuses, pod.Status.InitContainerStatuses) {
		pr, ok := p.procs[pod.Name+"/"+s.Name]
		if !ok {
			continue
		}
		switch {
		case s.State.Terminated != nil:
			pr.start()
			t := s.State.Terminated
			pr.end(fmt.Sprintf("the container ended (exit code %d, %s) without the wrapper's report", t.ExitCode, t.Reason))
		case s.State.Running != nil:
			pr.start()
		case s.State.Waiting != nil && !slices.Contains([]string{"", "ContainerCreating", "PodInitializing"}, s.State.Waiting.Reason):
			// (PodInitializing: what the kubelet first says of an
			// ephemeral container of a pod with init containers.)
			// It will not start (the image is missing, the runtime
			// refused it): ending it now beats waiting out the timeout.
			pr.end("the container did not start: " + s.State.Waiting.Reason + ": " + s.State.Waiting.Message)
		}
	}
}

// process is a process of a unit: a container (ephemeral, or of a pod
// made for its deployment) running the wrapper, whose output and exit the
// platform reads from the control directory.
type process struct {
	p                    *platform
	name, class          string
	pod, node, container string
	meshNode             string // the meshbench node
	base                 string // the control files' path, without suffix
	// Faults' state, guarded by the platform's lock: the pod failures in
	// force, the pod's generation (a pod-kill replaces it: the failures
	// of the one before end with it).
	pauses, gen    int
	stdout, stderr io.Writer

	// started: the container runs (or ran); ended: the kubelet or the
	// pod says it is over (endWhy says how), whatever the wrapper wrote.
	started, ended, done         chan struct{}
	startOnce, endOnce, doneOnce sync.Once
	endWhy                       string // guarded by the platform's lock until ended closes
	err                          error  // set before done closes
}

var _ runner.Process = (*process)(nil)

func (pr *process) Name() string          { return pr.name }
func (pr *process) Done() <-chan struct{} { return pr.done }
func (pr *process) Err() error            { <-pr.done; return pr.err }

func (pr *process) start() { pr.startOnce.Do(func() { close(pr.started) }) }

// end records that the container is over; the caller holds the
// platform's lock.
func (pr *process) end(why string) {
	pr.endOnce.Do(func() {
		pr.endWhy = why
		close(pr.ended)
	})
}

// why is what end recorded; call it once ended is closed.
func (pr *process) why() string { return pr.endWhy }

// abandon gives up a process that did not start: it may never start
// (podproc.CtlKill makes the wrapper exit without starting it), it is no longer
// the platform's, and it is done with err.
func (pr *process) abandon(err error) error {
	_ = os.WriteFile(pr.base+podproc.CtlKill, nil, 0o644)
	pr.p.mu.Lock()
	delete(pr.p.procs, pr.pod+"/"+pr.container)
	pr.p.mu.Unlock()
	pr.finish(err)
	pr.p.follows.Done()
	return err
}

func (pr *process) finish(err error) {
	pr.doneOnce.Do(func() {
		pr.err = err
		close(pr.done)
	})
}

// follow copies the wrapper's stdout file to the process's stdout as it
// grows, until the wrapper reports the exit (or the kubelet says the
// container ended and no report follows, or the platform goes down); then
// the stderr file; then the process is done.
func (pr *process) follow() {
	defer pr.p.follows.Done()
	var out *os.File
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	tail := func() {
		if out == nil {
			f, err := os.Open(pr.base + podproc.CtlStdout)
			if err != nil {
				return
			}
			out = f
		}
		_, _ = io.Copy(pr.stdout, out)
	}
	var err error
	var endedAt time.Time
	t := time.NewTicker(tailInterval)
	defer t.Stop()
loop:
	for {
		tail()
		if data, rerr := os.ReadFile(pr.base + podproc.CtlExit); rerr == nil {
			var r podproc.ExitReport
			if jerr := json.Unmarshal(data, &r); jerr != nil {
				err = fmt.Errorf("the wrapper's exit report: %w", jerr)
			} else {
				err = r.Err()
			}
			tail()
			break
		}
		select {
		case <-pr.ended:
			if endedAt.IsZero() {
				endedAt = time.Now()
			} else if time.Since(endedAt) > exitReportWait {
				err = errors.New(pr.why())
				break loop
			}
		default:
		}
		select {
		case <-pr.p.ctx.Done():
			err = errors.New("the platform went down before the process ended")
			break loop
		case <-t.C:
		}
	}
	tail() // what was written just before an end the wrapper did not report
	if f, ferr := os.Open(pr.base + podproc.CtlStderr); ferr == nil {
		_, _ = io.Copy(pr.stderr, f)
		f.Close()
	}
	pr.finish(err)
	// Done: no longer the platform's to watch or stop.
	pr.p.mu.Lock()
	delete(pr.p.procs, pr.pod+"/"+pr.container)
	pr.p.mu.Unlock()
}

// Stop asks the wrapper to send the process SIGTERM, then SIGKILL when
// ctx ends first.
func (pr *process) Stop(ctx context.Context) error {
	select {
	case <-pr.done:
		return nil
	default:
	}
	_ = os.WriteFile(pr.base+podproc.CtlTerm, nil, 0o644)
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
	}
	_ = os.WriteFile(pr.base+podproc.CtlKill, nil, 0o644)
	select {
	case <-pr.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (container %s of pod %s) did not end %s after SIGKILL", pr.name, pr.container, pr.pod, killWait)
	}
}
