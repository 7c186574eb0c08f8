// Command meshbench-pod-process is the kind platform's process wrapper
// alone (meshbench pod-process's arguments), a binary of the standard
// library only: each container of a kind run holds one, and the kubelet
// counts its memory with the process it wraps. make build puts it beside
// meshbench, which then puts it in the pods' image.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/meshbench/meshbench/runner/kind/podproc"
)

func main() {
	f := flag.NewFlagSet("meshbench-pod-process", flag.ContinueOnError)
	f.Usage = func() {
		fmt.Fprintln(f.Output(), "usage: meshbench-pod-process --hold | --control DIR --name NAME (-- COMMAND ARGS... | --await [--idle])")
		f.PrintDefaults()
	}
	hold := f.Bool("hold", false, "hold the pod: wait for SIGTERM")
	control := f.String("control", "", "the control directory: NAME.term and NAME.kill there signal the process; its stderr goes to NAME.stderr")
	name := f.String("name", "", "the container's name")
	await := f.Bool("await", false, "take the command line from NAME.argv in the control directory once it is there")
	idle := f.Bool("idle", false, "with --await: once the process has ended, wait for SIGTERM")
	if err := f.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *hold {
		podproc.Hold(nil)
		return
	}
	if *control == "" || *name == "" || (f.NArg() == 0) != *await || *idle && !*await {
		fmt.Fprintln(os.Stderr, "meshbench-pod-process: want --hold, or --control, --name and a command, or --control, --name and --await [--idle]")
		os.Exit(2)
	}
	if *await {
		os.Exit(podproc.Await(*control, *name, *idle, os.Stdout, os.Stderr))
	}
	os.Exit(podproc.Run(*control, *name, f.Args(), os.Stdout, os.Stderr))
}
