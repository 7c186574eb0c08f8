package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// reloadCheck is how often a Source looks at its files for a rotation.
const reloadCheck = time.Second

// Source serves a workload's certificate and trust bundle from Files and
// picks up rotated files on the next handshake after they change, so that
// rotation needs no restart and leaves established connections alone.
type Source struct {
	files Files

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	modTime time.Time
	checked time.Time
}

// NewSource loads the files once; they must exist and match.
func NewSource(f Files) (*Source, error) {
	s := &Source{files: f}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) load() error {
	st, err := os.Stat(s.files.Cert)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", s.files.Cert, err)
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificates in trust bundle %s", s.files.CA)
	}
	s.cert, s.pool, s.modTime = &cert, pool, st.ModTime()
	return nil
}

// current returns the certificate and pool, reloading them at most once per
// reloadCheck when the certificate file changed. A failed reload (files
// caught mid-rotation) keeps the previous pair.
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.checked) >= reloadCheck {
		s.checked = now
		if st, err := os.Stat(s.files.Cert); err == nil && !st.ModTime().Equal(s.modTime) {
			_ = s.load()
		}
	}
	return s.cert, s.pool
}

// ID returns the SPIFFE ID of the current certificate.
func (s *Source) ID() string {
	c, _ := s.current()
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return ""
		}
		return PeerID(leaf)
	}
	return PeerID(c.Leaf)
}

// ServerConfig requires and verifies a client certificate from the trust
// bundle; allow (if not nil) decides on the peer's SPIFFE ID.
func (s *Source) ServerConfig(allow func(peerID string) error, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		NextProtos: nextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := s.current()
			return c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verify(cs, x509.ExtKeyUsageClientAuth, allow)
		},
	}
}

// ClientConfig presents the workload's certificate and verifies the server
// against the trust bundle; allow (if not nil) decides on the server's
// SPIFFE ID. Host names are not checked: SPIFFE identities are URIs.
func (s *Source) ClientConfig(allow func(peerID string) error, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         nextProtos,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _ := s.current()
			return c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verify(cs, x509.ExtKeyUsageServerAuth, allow)
		},
	}
}

// ErrNoPeerCertificate is returned when the peer presented no certificate.
var ErrNoPeerCertificate = errors.New("peer presented no certificate")

func (s *Source) verify(cs tls.ConnectionState, usage x509.ExtKeyUsage, allow func(string) error) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNoPeerCertificate
	}
	_, pool := s.current()
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("verify peer certificate: %w", err)
	}
	id := PeerID(leaf)
	if id == "" {
		return errors.New("peer certificate has no SPIFFE ID")
	}
	if allow != nil {
		return allow(id)
	}
	return nil
}

// AllowIDs returns an allow function that accepts exactly the given IDs
// (any ID when the list is empty).
func AllowIDs(ids ...string) func(string) error {
	if len(ids) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return func(id string) error {
		if !set[id] {
			return fmt.Errorf("peer identity %s is not allowed", id)
		}
		return nil
	}
}
