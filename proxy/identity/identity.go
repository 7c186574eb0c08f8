// Package identity is the mesh's workload identity: a certificate authority
// (crypto/x509) that issues short-lived certificates whose URI SAN is a
// SPIFFE ID, spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// and the TLS configuration that proxies use to present and verify them,
// reloading rotated certificates without dropping connections.
//
// It issues and verifies identities; it does not decide who may talk to
// whom (that is the proxy's access control).
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// SPIFFEID returns spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return (&url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + namespace + "/sa/" + serviceAccount}).String()
}

// CA issues workload certificates.
type CA struct {
	TrustDomain string
	cert        *x509.Certificate
	key         crypto.Signer
	certPEM     []byte
	now         func() time.Time
}

// NewCA creates a self-signed root for trustDomain, valid for validity.
func NewCA(trustDomain string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"meshbench"}, CommonName: "meshbench CA " + trustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{TrustDomain: trustDomain, cert: cert, key: key, now: time.Now,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// RootPEM is the CA certificate in PEM, the trust bundle.
func (ca *CA) RootPEM() []byte { return ca.certPEM }

// Issue returns a certificate (PEM, leaf then CA) and its key (PEM) for
// the SPIFFE ID, valid for ttl, usable as TLS client and server. ips, when
// given, are addresses the certificate is also valid for as a server, for
// clients that check the address they dialed (grpc-go's xDS client checks
// its control plane's).
func (ca *CA) Issue(spiffeID string, ttl time.Duration, ips ...net.IP) (certPEM, keyPEM []byte, err error) {
	u, err := url.Parse(spiffeID)
	if err != nil || u.Scheme != "spiffe" || u.Host != ca.TrustDomain {
		return nil, nil, fmt.Errorf("%q is not a SPIFFE ID in trust domain %q", spiffeID, ca.TrustDomain)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"meshbench"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
		// The service account as a DNS name too, for proxies that verify
		// peers by host name rather than by SPIFFE ID (nginx).
		DNSNames:    []string{path.Base(u.Path)},
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", spiffeID, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.certPEM...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// Files names where a workload's identity lives on disk.
type Files struct {
	Cert, Key, CA string
}

// FilesIn returns the file names for name under dir.
func FilesIn(dir, name string) Files {
	return Files{
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
		CA:   filepath.Join(dir, "ca.crt"),
	}
}

// IssueFiles issues a certificate and writes it, its key and the trust
// bundle atomically (a reader sees the old or the new pair, never a mix of
// files half-written).
func (ca *CA) IssueFiles(f Files, spiffeID string, ttl time.Duration, ips ...net.IP) error {
	certPEM, keyPEM, err := ca.Issue(spiffeID, ttl, ips...)
	if err != nil {
		return err
	}
	// The key goes first: a reloading proxy pairs the newest cert with the
	// newest key, and checks that they match before using them.
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CA, ca.certPEM, 0o644}, {f.Key, keyPEM, 0o600}, {f.Cert, certPEM, 0o644}} {
		if err := writeAtomic(w.path, w.data, w.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// PeerID returns the SPIFFE ID in a verified peer certificate, or "".
func PeerID(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return u.String()
		}
	}
	return ""
}
