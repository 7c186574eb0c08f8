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

// IssuePair creates a CA and issues the client and the server their SPIFFE
// identities (spiffe://meshbench.local/ns/default/sa/<name>) under env.Dir.
func IssuePair(env Env) (client, server Identity, err error) {
	ca, err := identity.NewCA(TrustDomain, 24*time.Hour)
	if err != nil {
		return client, server, err
	}
	issue := func(w Workload) (Identity, error) {
		id := Identity{ID: identity.SPIFFEID(TrustDomain, Namespace, w.Name), Files: identity.FilesIn(env.Dir, w.Name)}
		if err := ca.IssueFiles(id.Files, id.ID, CertTTL); err != nil {
			return id, fmt.Errorf("identity for %s: %w", w.Name, err)
		}
		cert, err1 := os.ReadFile(id.Files.Cert)
		key, err2 := os.ReadFile(id.Files.Key)
		if err1 != nil || err2 != nil {
			return id, fmt.Errorf("identity for %s: read back its files", w.Name)
		}
		id.PEM = id.Files.Cert + ".pem"
		return id, os.WriteFile(id.PEM, append(cert, key...), 0o600)
	}
	if client, err = issue(env.Client); err != nil {
		return client, server, err
	}
	server, err = issue(env.Server)
	return client, server, err
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

// SidecarRedirects are the transparent-interception rules of a sidecar
// mesh whose proxies run as uid (their own traffic is left alone).
func SidecarRedirects(env Env, uid int) []Redirect {
	return []Redirect{
		{Node: env.Client.Node.Name, Outbound: true, ToPort: OutboundPort, ExcludeUID: uid},
		{Node: env.Server.Node.Name, Port: env.Server.Port, ToPort: InboundPort},
	}
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

// ProxyPlan is where a two-proxy deployment's traffic goes: the client
// calls Target; the client-side proxy sends to Upstream.
type ProxyPlan struct {
	Target    Target
	Upstream  string
	Redirects []Redirect
	// Transparent says interception is installed (Redirects).
	Transparent bool
}

// PlanProxies decides, for meshes that put one proxy on the client's side
// and one on the server's, between explicit dialing (the client calls its
// proxy's outbound port, which calls the server side's inbound port) and
// transparent interception (the client calls the server; Redirects send
// that to the proxies), which needs the platform's support and the uid the
// proxies run as (their own traffic is left alone).
func PlanProxies(env Env, transparent bool, uid int) ProxyPlan {
	client, server := env.Client, env.Server
	p := ProxyPlan{
		Target: Target{
			URL:  "http://" + HostPort(client.Node.Local, OutboundPort) + "/",
			Host: server.Name + ":" + strconv.Itoa(server.Port),
		},
		Upstream: HostPort(server.Node.Addr, InboundPort),
	}
	if transparent && env.Transparent && uid != 0 {
		p.Transparent = true
		p.Upstream = HostPort(server.Node.Addr, server.Port)
		p.Target.URL = "http://" + p.Upstream + "/"
		p.Redirects = SidecarRedirects(env, uid)
	}
	return p
}
