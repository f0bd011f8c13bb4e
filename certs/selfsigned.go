// Package certs provides meshguard's serving certificates: a self-signed bootstrap for
// clusters without cert-manager and for local runs.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names in a certificate folder, as controller-runtime's webhook server reads them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// Bundle is a serving certificate and the CA that signed it, PEM-encoded. CAKey is kept
// only where leaves are re-issued (the bootstrap's Secret); it is never served.
type Bundle struct {
	CA, CAKey, Cert, Key []byte
}

// SelfSigned makes a CA and a serving certificate for hosts (DNS names or IP addresses),
// both valid for the given time.
func SelfSigned(hosts []string, validFor time.Duration) (*Bundle, error) {
	return selfSigned(hosts, validFor, validFor, time.Now())
}

func selfSigned(hosts []string, caValidFor, leafValidFor time.Duration, now time.Time) (*Bundle, error) {
	b, err := newCA(caValidFor, now)
	if err != nil {
		return nil, err
	}
	return b, b.Reissue(hosts, leafValidFor, now)
}

// SelfSignedClient makes a CA and a client certificate for name, both valid for the given
// time: the certificate the API server presents to meshguard where meshguard requires one
// (serve --client-ca-file), for local runs.
func SelfSignedClient(name string, validFor time.Duration) (*Bundle, error) {
	now := time.Now()
	b, err := newCA(validFor, now)
	if err != nil {
		return nil, err
	}
	return b, b.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		NotBefore:   now.Add(-backdate(validFor)),
		NotAfter:    now.Add(validFor),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// newCA makes a CA, valid for the given time, with no certificate issued yet.
func newCA(caValidFor time.Duration, now time.Time) (*Bundle, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "meshguard self-signed CA"},
		NotBefore:             now.Add(-backdate(caValidFor)),
		NotAfter:              now.Add(caValidFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CA:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CAKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
	}, nil
}

// Reissue replaces the serving certificate with a new one, signed by the same CA, so that
// clients trusting the CA notice nothing.
func (b *Bundle) Reissue(hosts []string, validFor time.Duration, now time.Time) error {
	leaf := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		NotBefore:   now.Add(-backdate(validFor)),
		NotAfter:    now.Add(validFor),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	return b.issue(leaf)
}

// issue signs a new certificate of template, with a key of its own, by the bundle's CA.
func (b *Bundle) issue(leaf *x509.Certificate) error {
	ca, caKey, err := b.parseCA()
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	b.Cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b.Key = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return nil
}

func (b *Bundle) parseCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certBlock, _ := pem.Decode(b.CA)
	keyBlock, _ := pem.Decode(b.CAKey)
	if certBlock == nil || keyBlock == nil {
		return nil, nil, errors.New("the CA certificate or key is not PEM")
	}
	ca, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	return ca, key, nil
}

// NeedsReissue tells why the serving certificate must be re-issued at now, or "": it does
// not parse, lacks one of hosts, or has less than a third of its life left.
func (b *Bundle) NeedsReissue(hosts []string, now time.Time) string {
	block, _ := pem.Decode(b.Cert)
	if block == nil {
		return "the serving certificate is not PEM"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "the serving certificate does not parse"
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return fmt.Sprintf("the serving certificate does not cover %s", h)
		}
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); cert.NotAfter.Sub(now) < life/3 {
		return fmt.Sprintf("the serving certificate expires at %s", cert.NotAfter.Format(time.RFC3339))
	}
	return ""
}

// backdate starts a certificate a little in the past, for clocks that run behind: a minute,
// or a tenth of a short lifetime.
func backdate(validFor time.Duration) time.Duration {
	return min(time.Minute, validFor/10)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Write puts the serving pair and the CA certificate in dir as tls.crt, tls.key and ca.crt
// (never the CA key). Each file is written aside and renamed, key first, so a server
// watching dir never reads half a file.
func (b *Bundle) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAFile, b.CA, 0o644}, {KeyFile, b.Key, 0o600}, {CertFile, b.Cert, 0o644}} {
		if current, err := os.ReadFile(filepath.Join(dir, f.name)); err == nil && slices.Equal(current, f.data) {
			continue
		}
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}
