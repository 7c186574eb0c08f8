package proxy

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// rbac is a compiled RBAC: allow if any policy matches, deny otherwise.
type rbac struct {
	policies []Policy
	regexes  map[string]*regexp.Regexp
}

func newRBAC(cfg *RBAC) *rbac {
	a := &rbac{policies: cfg.Policies, regexes: map[string]*regexp.Regexp{}}
	for _, p := range cfg.Policies {
		for _, re := range p.PathRegexes {
			a.regexes[re] = anchored(re)
		}
	}
	return a
}

// source is the identity a request comes from: the verified peer
// certificate's SPIFFE ID, "" for a plaintext peer. On listeners whose
// policies name a SourceHeader, that header is used instead when present:
// only node proxies, which the listener's mTLS admits, can set it, since
// the sending node proxy removes it from what its apps send.
func (l *listener) source(r *http.Request) string {
	if src, ok := r.Context().Value(internalSourceKey{}).(string); ok {
		// An internal listener's request: the identity of the stream
		// its connection was opened for.
		return src
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	if l.sourceHeader != "" {
		// Validate requires such listeners to pin their peers' identities
		// (AllowedIDs), so only those (node proxies) reach here; what they
		// assert is the source, and a missing assertion is no identity,
		// not the node proxy's own.
		return r.Header.Get(l.sourceHeader)
	}
	return identity.PeerID(r.TLS.PeerCertificates[0])
}

// allows says whether a request from source with this method, authority
// and (decoded, normal) path is admitted.
func (a *rbac) allows(source, method, host, path string) bool {
	for i := range a.policies {
		if a.matches(&a.policies[i], source, method, host, path) {
			return true
		}
	}
	return false
}

func (a *rbac) matches(p *Policy, source, method, host, path string) bool {
	principal := false
	for _, want := range p.Principals {
		if (want == "*" && source != "") || want == source {
			principal = true
			break
		}
	}
	if !principal {
		return false
	}
	if len(p.Methods) > 0 && !slices.Contains(p.Methods, method) {
		return false
	}
	if len(p.Hosts) > 0 && !slices.Contains(p.Hosts, host) {
		return false
	}
	if len(p.PathPrefixes) == 0 && len(p.Paths) == 0 && len(p.PathRegexes) == 0 {
		return true
	}
	if slices.Contains(p.Paths, path) {
		return true
	}
	for _, re := range p.PathRegexes {
		if a.regexes[re].MatchString(path) {
			return true
		}
	}
	for _, prefix := range p.PathPrefixes {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

func faultApplies(f *Fault, r *http.Request) bool {
	return f.Header == "" || r.Header.Get(f.Header) != ""
}

// injectFault delays and/or aborts the request as the fault says; it
// reports whether the request was answered (aborted) and with what code.
func (l *listener) injectFault(w http.ResponseWriter, r *http.Request, f *Fault) (int, bool) {
	if f.Delay > 0 && rand.Float64()*100 < f.DelayPercent {
		l.stats.faultDelays.Add(1)
		t := time.NewTimer(f.Delay.D())
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return 499, true
		}
	}
	if f.AbortPercent <= 0 || rand.Float64()*100 >= f.AbortPercent {
		return 0, false
	}
	l.stats.faultAborts.Add(1)
	if f.AbortGRPCStatus != 0 {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(f.AbortGRPCStatus))
		w.Header().Set("Grpc-Message", "fault filter abort")
		w.WriteHeader(http.StatusOK)
		l.stats.count(http.StatusOK)
		return http.StatusOK, true
	}
	return l.fail(w, f.AbortStatus, "fault filter abort: "+statusText(f.AbortStatus)), true
}
