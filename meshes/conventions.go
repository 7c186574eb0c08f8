package meshes

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/scenarios"
)

// Reference data planes share these conventions with the own mesh, so that
// every mesh is measured on the same ports, identities and interception.
const (
	AdminPort    = 15000
	OutboundPort = 15001
	InboundPort  = 15006
	TrustDomain  = "meshbench.local"
	Namespace    = "default"
	CertTTL      = time.Hour
)

// Identity is a workload's mTLS identity on disk.
type Identity struct {
	ID    string
	Files identity.Files
	// PEM holds certificate chain and key in one file (HAProxy's format).
	PEM string
}

// IssueAll creates a CA and issues every workload of env its SPIFFE
// identity (spiffe://meshbench.local/ns/default/sa/<name>) under env.Dir,
// by workload name, and every shared node's proxy its own (sa/node-<node>),
// by node name.
func IssueAll(env Env) (map[string]Identity, error) {
	ca, err := identity.NewCA(TrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	out := map[string]Identity{}
	for _, w := range env.Workloads() {
		id, err := issue(ca, env.Dir, w.Name, w.Account())
		if err != nil {
			return nil, err
		}
		out[w.Name] = id
	}
	// A shared node's proxy is the node's (its name is no workload's).
	for _, g := range env.ProxyGroups(scenarios.PerNode) {
		if !g.Shared {
			continue
		}
		id, err := issue(ca, env.Dir, g.Node.Name, "node-"+g.Node.Name)
		if err != nil {
			return nil, err
		}
		out[g.Node.Name] = id
	}
	return out, nil
}

// issue writes name's identity as account under dir.
func issue(ca *identity.CA, dir, name, account string) (Identity, error) {
	id := Identity{ID: identity.SPIFFEID(TrustDomain, Namespace, account), Files: identity.FilesIn(dir, name)}
	if err := ca.IssueFiles(id.Files, id.ID, CertTTL); err != nil {
		return id, fmt.Errorf("identity for %s: %w", name, err)
	}
	cert, err1 := os.ReadFile(id.Files.Cert)
	key, err2 := os.ReadFile(id.Files.Key)
	if err1 != nil || err2 != nil {
		return id, fmt.Errorf("identity for %s: read back its files", name)
	}
	id.PEM = id.Files.Cert + ".pem"
	return id, os.WriteFile(id.PEM, append(cert, key...), 0o600)
}

// BinaryVersion runs `path args...` and returns the first line it prints.
func BinaryVersion(path string, args ...string) string {
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// UserID returns the uid of a system user, or 0 when there is none.
func UserID(name string) int {
	u, err := user.Lookup(name)
	if err != nil {
		return 0
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// GroupID returns the gid of a system group, or 0 when there is none.
func GroupID(name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// Exclusion is how interception tells a proxy's own connections from the
// application's: by socket mark (SO_MARK) or by the uid the proxy runs as.
type Exclusion struct {
	Mark, UID int
}

// SidecarRedirects are the transparent-interception rules of a sidecar
// mesh: every calling workload's outbound connections go to its proxy's
// outbound port (the proxy's own, as ex says, are left alone), and every
// service's inbound connections to its proxy's inbound port.
func SidecarRedirects(env Env, ex Exclusion) []Redirect {
	var out []Redirect
	for _, w := range env.Workloads() {
		if len(env.Callees(w)) > 0 {
			out = append(out, Redirect{Node: w.Node.Name, Outbound: true, ToPort: OutboundPort, ExcludeMark: ex.Mark, ExcludeUID: ex.UID})
		}
	}
	for _, s := range env.Services {
		for _, pod := range s.Pods() {
			out = append(out, Redirect{Node: pod.Node.Name, Port: pod.Port, ToPort: InboundPort})
		}
	}
	return out
}

// Binary is an external data plane's executable, for meshes that run one:
// embed it to get Available and Version.
type Binary struct {
	// Name is the executable; Package the Debian package that has it.
	Name, Package string
	// VersionArgs make it print its version.
	VersionArgs []string
}

// Available reports whether the executable is in PATH.
func (b Binary) Available() error {
	if _, err := exec.LookPath(b.Name); err != nil {
		return fmt.Errorf("%s not found in PATH (Debian: apt-get install %s; scripts/setup.sh installs it)", b.Name, b.Package)
	}
	return nil
}

// Version is the first line the executable prints with VersionArgs.
func (b Binary) Version() string {
	path, err := exec.LookPath(b.Name)
	if err != nil {
		return ""
	}
	return BinaryVersion(path, b.VersionArgs...)
}

// ProxyPlan is where a proxy-per-workload deployment's traffic goes: the
// client calls Target and the services make Apps' calls; a caller's proxy
// sends to Upstream(callee).
type ProxyPlan struct {
	Target    Target
	Apps      map[string]App
	Redirects []Redirect
	// Transparent says interception is installed (Redirects).
	Transparent bool
	perNode     bool
}

// Upstream is where a caller's proxy sends requests for a callee's pod:
// the pod's own address when interception takes them to its proxy, the
// pod's proxy's inbound port otherwise.
func (p ProxyPlan) Upstream(callee Workload) string {
	switch {
	case p.Transparent:
		return HostPort(callee.Node.Addr, callee.Port)
	case p.perNode:
		return NodeInbound(callee)
	}
	return HostPort(callee.Node.Addr, InboundPort)
}

// PlanProxies decides, for meshes that put a proxy beside each workload
// (sidecar) or on each node (per-node), between explicit dialing (apps
// call their proxy's outbound port, which calls the callee side's inbound
// port) and, for sidecars, transparent interception (apps call their
// callees; Redirects send that through the proxies), which needs the
// platform's support and a way to tell the proxies' own connections apart
// (ex).
func PlanProxies(env Env, mode scenarios.Mode, ex Exclusion) ProxyPlan {
	entry := env.Entry()
	p := ProxyPlan{
		Target: Target{URL: "http://" + HostPort(env.Client.Node.Local, OutboundPort) + "/", Host: entry.Authority()},
		Apps:   CallsVia(env, ViaOutbound),
	}
	if mode == scenarios.PerNode {
		p.perNode = true
		p.Target.URL = "http://" + NodeOutbound(env.Client) + "/"
		p.Apps = CallsVia(env, ViaNode)
		return p
	}
	if env.Transparent && (ex.UID != 0 || ex.Mark != 0) {
		p.Transparent = true
		p.Target.URL = "http://" + entry.Dial() + "/"
		p.Apps = CallsVia(env, Direct)
		p.Redirects = SidecarRedirects(env, ex)
	}
	return p
}
