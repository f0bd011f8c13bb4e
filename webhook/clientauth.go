package webhook

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshguard/meshguard/certs"
)

// verifyClient accepts, as the client of a review, a certificate for client authentication
// issued by a CA of caFile (the one the API server presents: its AdmissionConfiguration's
// kubeConfigFile), or one with meshguard's own serving key (certFile): a replica
// forwarding a review to the one that leads. Both files are read at each handshake, so
// rotations take effect at once.
func verifyClient(caFile, certFile string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("meshguard takes reviews from the API server only: no client certificate was presented")
		}
		if ownKey(certFile, raw[0]) == nil {
			return nil
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		data, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(data) {
			return fmt.Errorf("%s holds no certificate", caFile)
		}
		intermediates := x509.NewCertPool()
		for _, der := range raw[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				intermediates.AddCert(c)
			}
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err
	}
}

// ownKey tells, by a nil error, whether a DER certificate has the key of meshguard's serving
// certificate, certFile: the replicas share it.
func ownKey(certFile string, der []byte) error {
	peer, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s holds no certificate", certFile)
	}
	own, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	if !bytes.Equal(peer.RawSubjectPublicKeyInfo, own.RawSubjectPublicKeyInfo) {
		return errors.New("the certificate is not meshguard's")
	}
	return nil
}

// servingCertificate loads the serving certificate of certFile and the key beside it, as
// a replica presents them to the one that leads.
func servingCertificate(certFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, filepath.Join(filepath.Dir(certFile), certs.KeyFile))
	return &c, err
}
