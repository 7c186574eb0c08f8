package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// kubeCommands are the k8s.io/kubernetes commands a node carries: the
// node's own (kubeadm, kubelet, kubectl) and the control plane's and
// kube-proxy's, which run from images.
var kubeCommands = []string{"kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// stagingModules are k8s.io/kubernetes's staging modules: its go.mod
// replaces them with directories of its own tree, which a dependent module
// does not have, so they are pinned to the matching v0 release instead.
var stagingModules = []string{"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
	"cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers", "controller-manager",
	"cri-api", "cri-client", "csi-translation-lib", "dynamic-resource-allocation", "endpointslice", "externaljwt", "kms",
	"kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
	"mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin", "sample-controller"}

// pauseSource is the pause container: it holds a pod's namespaces open
// until it is told to stop.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
`

// goBuild is one cached Go build: a module of its own requiring what it
// builds, static binaries into its bin directory.
type goBuild struct {
	name    string // the cache directory's name
	gomod   string
	files   map[string]string // extra files of the module
	get     []string          // go get arguments (packages@version)
	pkgs    []string          // packages to build
	ldflags string
	note    string // what to expect, for the progress line
}

// binaries builds (or finds in the cache) every binary the node image
// needs and returns their paths by command name.
func (b *Builder) binaries(ctx context.Context) (map[string]string, error) {
	k := b.Kubernetes
	minor := strings.Split(strings.TrimPrefix(k, "v"), ".")
	if len(minor) < 3 {
		return nil, fmt.Errorf("kubernetes version %q: want vMAJOR.MINOR.PATCH", k)
	}
	v0 := "v0." + minor[1] + "." + minor[2]
	var replace strings.Builder
	for _, m := range stagingModules {
		fmt.Fprintf(&replace, "\tk8s.io/%s => k8s.io/%s %s\n", m, m, v0)
	}
	var ld strings.Builder
	ld.WriteString("-s -w")
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&ld, " -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s -X %[1]s.gitTreeState=clean -X %[1]s.buildDate=1970-01-01T00:00:00Z",
			p, k, minor[0], minor[1])
	}
	var kubePkgs, kubeGet []string
	for _, c := range kubeCommands {
		kubePkgs = append(kubePkgs, "k8s.io/kubernetes/cmd/"+c)
		kubeGet = append(kubeGet, "k8s.io/kubernetes/cmd/"+c+"@"+k)
	}
	builds := []goBuild{
		{name: "kube-" + k, gomod: "module meshbench.local/kubebuild\n\ngo 1.24.0\n\nreplace (\n" + replace.String() + ")\n",
			get: kubeGet, pkgs: kubePkgs, ldflags: ld.String(), note: " (cold: about 8-10 minutes on 2 cores)"},
		{name: "etcd-" + b.Etcd, gomod: "module meshbench.local/etcdbuild\n\ngo 1.24\n",
			get: []string{"go.etcd.io/etcd/server/v3@" + b.Etcd}, pkgs: []string{"go.etcd.io/etcd/server/v3"}, ldflags: "-s -w"},
		{name: "coredns-" + b.CoreDNS, gomod: "module meshbench.local/corednsbuild\n\ngo 1.24\n",
			get: []string{"github.com/coredns/coredns@" + b.CoreDNS}, pkgs: []string{"github.com/coredns/coredns"}, ldflags: "-s -w"},
		{name: "pause-1", gomod: "module meshbench.local/pause\n\ngo 1.24\n", files: map[string]string{"main.go": pauseSource},
			pkgs: []string{"."}, ldflags: "-s -w"},
	}
	out := map[string]string{}
	for _, gb := range builds {
		// Keyed by everything that decides what is built, not only the
		// version.
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%v\x00%v\x00%s\x00%v", gb.gomod, gb.get, gb.pkgs, gb.ldflags, gb.files)
		dir := filepath.Join(b.CacheDir, "build", gb.name+"-"+hex.EncodeToString(h.Sum(nil))[:8])
		if err := b.goBuild(ctx, dir, gb); err != nil {
			return nil, err
		}
		entries, err := os.ReadDir(filepath.Join(dir, "bin"))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			out[e.Name()] = filepath.Join(dir, "bin", e.Name())
		}
	}
	// The etcd server module's command is named after its directory.
	if p, ok := out["server"]; ok {
		out["etcd"] = p
		delete(out, "server")
	}
	for _, want := range append(kubeCommands, "etcd", "coredns", "pause") {
		if out[want] == "" {
			return nil, fmt.Errorf("%s was not built (have %v)", want, out)
		}
	}
	return out, nil
}

// goBuild builds gb into dir/bin unless a finished build is there.
func (b *Builder) goBuild(ctx context.Context, dir string, gb goBuild) error {
	if done(dir) {
		b.Log("binaries %s: cached in %s", gb.name, dir)
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gb.gomod), 0o644); err != nil {
		return err
	}
	for name, content := range gb.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	start := time.Now()
	b.Log("binaries %s: building%s", gb.name, gb.note)
	env := []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod"}
	if len(gb.get) > 0 {
		if err := b.run(ctx, dir, env, "go", append([]string{"get"}, gb.get...)...); err != nil {
			return err
		}
	}
	args := append([]string{"build", "-trimpath", "-ldflags", gb.ldflags, "-o", "bin/"}, gb.pkgs...)
	if err := b.run(ctx, dir, env, "go", args...); err != nil {
		return err
	}
	b.Log("binaries %s: built in %s", gb.name, time.Since(start).Round(time.Second))
	return markDone(dir)
}
