// Package ociruntime is an OCI runtime wrapper for hosts whose capability
// bounding set lacks capabilities a container engine asks for.
//
// Docker 20.10 gives a privileged container (kind runs its nodes so) every
// capability it knows, and runc fails to grant one outside its own
// bounding set ("unable to apply caps: operation not permitted"). On such
// a host dockerd is started with this wrapper as its default runtime: it
// removes the capabilities the host cannot grant from the bundle's
// config.json (create, run) or the --process spec (exec), then execs runc
// with the arguments unchanged. Nothing else of the spec is touched.
package ociruntime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps capability numbers to the names OCI specs use, for the
// ones a container engine hands out and a restricted host may lack.
var capNames = map[int]string{
	0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER", 4: "CAP_FSETID",
	5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP", 9: "CAP_LINUX_IMMUTABLE",
	10: "CAP_NET_BIND_SERVICE", 11: "CAP_NET_BROADCAST", 12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW",
	14: "CAP_IPC_LOCK", 15: "CAP_IPC_OWNER", 16: "CAP_SYS_MODULE", 17: "CAP_SYS_RAWIO", 18: "CAP_SYS_CHROOT",
	19: "CAP_SYS_PTRACE", 20: "CAP_SYS_PACCT", 21: "CAP_SYS_ADMIN", 22: "CAP_SYS_BOOT", 23: "CAP_SYS_NICE",
	24: "CAP_SYS_RESOURCE", 25: "CAP_SYS_TIME", 26: "CAP_SYS_TTY_CONFIG", 27: "CAP_MKNOD", 28: "CAP_LEASE",
	29: "CAP_AUDIT_WRITE", 30: "CAP_AUDIT_CONTROL", 31: "CAP_SETFCAP", 32: "CAP_MAC_OVERRIDE",
	33: "CAP_MAC_ADMIN", 34: "CAP_SYSLOG", 35: "CAP_WAKE_ALARM", 36: "CAP_BLOCK_SUSPEND", 37: "CAP_AUDIT_READ",
	38: "CAP_PERFMON", 39: "CAP_BPF", 40: "CAP_CHECKPOINT_RESTORE",
}

// Missing lists the known capabilities outside this process's bounding
// set (from /proc/self/status), by OCI name.
func Missing() ([]string, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	return missingFrom(string(data), last)
}

// missingFrom reads the bounding set from a status file; capabilities
// past the kernel's last are not missing (the kernel has none to grant).
func missingFrom(status string, last int) ([]string, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("CapBnd %q: %w", v, err)
			}
			var out []string
			for n := 0; n <= min(last, 40); n++ {
				if bnd&(1<<n) == 0 {
					out = append(out, capNames[n])
				}
			}
			return out, nil
		}
	}
	return nil, errors.New("no CapBnd line in /proc/self/status")
}

// Exec edits the spec the runc arguments args name, removing drop from
// every capability set, and replaces this process with runc.
func Exec(runc string, args []string, drop []string) error {
	if err := Edit(args, drop); err != nil {
		return fmt.Errorf("meshbench oci runtime: %w", err)
	}
	return syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
}

// FindRunc is runc on PATH or where Debian installs it.
func FindRunc() (string, error) {
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("runc not found")
}

// globalWithValue are runc's global flags that take a value.
var globalWithValue = []string{"--root", "--log", "--log-format", "--criu", "--rootless"}

// Edit finds the spec file in runc's arguments (create/run: the bundle's
// config.json; exec: the --process file, if any) and removes drop from
// its capabilities. Other commands pass through untouched.
func Edit(args []string, drop []string) error {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if slices.Contains(globalWithValue, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return nil
	}
	cmd, rest := args[i], args[i+1:]
	switch cmd {
	case "create", "run":
		bundle, err := os.Getwd()
		if err != nil {
			return err
		}
		if v, ok := flagValue(rest, "--bundle", "-b"); ok {
			bundle = v
		}
		return editFile(filepath.Join(bundle, "config.json"), drop, true)
	case "exec":
		if v, ok := flagValue(rest, "--process", "-p"); ok {
			return editFile(v, drop, false)
		}
	}
	return nil
}

// flagValue finds a flag's value, as "--flag v", "--flag=v" or "-f v".
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v, true
		}
	}
	return "", false
}

// editFile rewrites a spec (a bundle's config.json, whose capabilities
// are under "process", or an exec's process.json, which is the process)
// without the dropped capabilities, keeping every other field.
func editFile(path string, drop []string, bundle bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Numbers stay as written (an rlimit of RLIM_INFINITY does not fit a
	// float64).
	var spec map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc := spec
	if bundle {
		p, ok := spec["process"].(map[string]any)
		if !ok {
			return nil
		}
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]any)
	if !ok || !dropCaps(caps, drop) {
		return nil
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".meshbench"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dropCaps removes drop from each capability set and says whether any
// was there.
func dropCaps(caps map[string]any, drop []string) bool {
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := list[:0:0]
		for _, c := range list {
			if s, ok := c.(string); ok && slices.Contains(drop, s) {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}
