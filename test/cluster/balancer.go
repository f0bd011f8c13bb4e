package cluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshguard/meshguard/certs"
)

// Balancer stands for the meshguard Service in front of several replicas: an HTTPS server
// on loopback, with meshguard's certificate, that sends each review to one of the replicas
// it routes to, in turn, as the API server's client. Route changes the replicas as a Service's endpoints change: a
// replica is taken out before it stops, as Kubernetes does during the preStop hook.
type Balancer struct {
	URL    string
	srv    *http.Server
	client *http.Client

	mu       sync.Mutex
	backends []*Replica
	next     int
}

// NewBalancer serves the balancer, routing to replicas.
func (c *Cluster) NewBalancer(replicas ...*Replica) (*Balancer, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.certDir, certs.CertFile), filepath.Join(c.certDir, certs.KeyFile))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(c.certDir, certs.CAFile))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	// A Service passes the API server's TLS through to a replica; the balancer, which
	// ends it to spread reviews one by one, presents the API server's client certificate.
	apiServer, err := c.APIServerClient()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{
		URL:      "https://" + l.Addr().String(),
		backends: replicas,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{apiServer}}, MaxIdleConnsPerHost: 64,
		}},
	}
	b.srv = &http.Server{Handler: b, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = b.srv.ServeTLS(l, "", "") }()
	return b, nil
}

// Route sends the reviews from now on to these replicas.
func (b *Balancer) Route(replicas ...*Replica) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = replicas
}

// Close stops the balancer.
func (b *Balancer) Close() { _ = b.srv.Close() }

func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	if len(b.backends) == 0 {
		b.mu.Unlock()
		http.Error(w, "no replica to route to", http.StatusServiceUnavailable)
		return
	}
	to := b.backends[b.next%len(b.backends)]
	b.next++
	b.mu.Unlock()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, to.URL+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	resp, err := b.client.Do(req)
	if err != nil {
		if errors.Is(err, r.Context().Err()) {
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
