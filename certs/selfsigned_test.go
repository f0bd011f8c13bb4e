package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSelfSigned serves with the certificate and checks that a client trusting only the CA
// connects by IP and by name, with TLS 1.2 or later.
func TestSelfSigned(t *testing.T) {
	b, err := SelfSigned([]string{"meshguard.meshguard-system.svc", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(dir, KeyFile)); info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", info.Mode().Perm())
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CA) {
		t.Fatal("CA does not parse")
	}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, serverName := range []string{"", "meshguard.meshguard-system.svc"} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
		resp, err := c.Get("https://127.0.0.1:" + port)
		if err != nil {
			t.Fatalf("server name %q: %v", serverName, err)
		}
		resp.Body.Close()
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "other.example"}}}
	if _, err := c.Get("https://127.0.0.1:" + port); err == nil {
		t.Error("a name not in the certificate was accepted")
	}
}
