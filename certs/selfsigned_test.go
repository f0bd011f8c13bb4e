package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

func TestReissue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hosts := []string{"meshguard.meshguard-system.svc"}
	b, err := selfSigned(hosts, 10*365*24*time.Hour, 90*24*time.Hour, start)
	if err != nil {
		t.Fatal(err)
	}
	for at, want := range map[time.Duration]bool{0: false, 59 * 24 * time.Hour: false, 61 * 24 * time.Hour: true, 91 * 24 * time.Hour: true} {
		if got := b.NeedsReissue(hosts, start.Add(at)) != ""; got != want {
			t.Errorf("after %v: needs re-issue %v, want %v", at, got, want)
		}
	}
	if why := b.NeedsReissue([]string{"other.svc"}, start); !strings.Contains(why, "does not cover other.svc") {
		t.Errorf("a host the certificate lacks: %q", why)
	}
	ca, leaf := b.CA, b.Cert
	if err := b.Reissue(hosts, 90*24*time.Hour, start.Add(61*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.CA, ca) || bytes.Equal(b.Cert, leaf) {
		t.Error("re-issue must keep the CA and change the leaf")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	block, _ := pem.Decode(b.Cert)
	cert, _ := x509.ParseCertificate(block.Bytes)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: hosts[0], CurrentTime: start.Add(62 * 24 * time.Hour)}); err != nil {
		t.Errorf("the re-issued leaf does not verify against the old CA: %v", err)
	}
}
