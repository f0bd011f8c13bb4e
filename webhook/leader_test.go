package webhook

import (
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshguard/meshguard/certs"
)

// peers serves a leader over HTTPS with a certificate of its own, and returns it and a
// follower that forwards to it, pinned to certFile.
func peers(t *testing.T, leaderCert []byte, leaderKey []byte, certFile string, manifests ...string) (leader, follower *Server) {
	t.Helper()
	leader = newServer(t, true, manifests...)
	leader.Leader = &Leader{Lease: &resourcelock.LeaseLock{LockConfig: resourcelock.ResourceLockConfig{Identity: "leader"}}}
	long := time.Now().Add(-time.Minute)
	leader.Leader.leadingSince.Store(&long)
	cert, err := tls.X509KeyPair(leaderCert, leaderKey)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(reviews{handler: leader.Validating(), log: logr.Discard()})
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake of TestLeaderNotPinned
	ts.StartTLS()
	t.Cleanup(ts.Close)

	follower = newServer(t, true, manifests...)
	follower.Metrics = NewMetrics(prometheus.NewRegistry())
	follower.Leader = &Leader{Lease: &resourcelock.LeaseLock{LockConfig: resourcelock.ResourceLockConfig{Identity: "follower"}}, CertFile: certFile}
	follower.Leader.client.Store(follower.Leader.peerClient())
	address := ts.URL
	follower.Leader.current.Store(&address)
	return leader, follower
}

func servingCert(t *testing.T) (cert, key []byte, file string) {
	t.Helper()
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "tls.crt")
	if err := os.WriteFile(file, bundle.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return bundle.Cert, bundle.Key, file
}

// TestForwardedToLeader: the two DELETEs that together would open web reach a replica that
// does not lead; it forwards both to the leader, which judges them one after the other on
// its cache, the first laid over, without a read of the API server: the second is denied,
// though the follower's own cache would allow it.
func TestForwardedToLeader(t *testing.T) {
	cert, key, file := servingCert(t)
	leader, follower := peers(t, cert, key, file, raGood, apRequire, apDenyAnonymous)
	reads := &countingReader{Reader: leader.Reader}
	leader.APIReader = reads
	v := follower.Validating()
	if r := review(t, v, admissionv1.Delete, "", apRequire, false); !r.Allowed {
		t.Fatalf("the first DELETE: %s", r.Result.Message)
	}
	if r := review(t, v, admissionv1.Delete, "", apDenyAnonymous, false); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
		t.Errorf("the second DELETE: allowed=%v %v", r.Allowed, r.Result)
	}
	if n := reads.n.Load(); n != 0 {
		t.Errorf("the settled leader read the API server %d times", n)
	}
	if n := testutil.ToFloat64(follower.Metrics.forwardFailures); n != 0 {
		t.Errorf("forward failures: %v", n)
	}
	// What the follower alone would say.
	follower.Leader = nil
	if r := review(t, follower.Validating(), admissionv1.Delete, "", apDenyAnonymous, false); !r.Allowed {
		t.Errorf("on the follower's own cache: %s", r.Result.Message)
	}
}

// TestLeaderNotPinned: a leader that presents another key is not trusted with the review:
// the write is refused, to be retried, and not judged by a replica that does not lead.
func TestLeaderNotPinned(t *testing.T) {
	cert, key, _ := servingCert(t)
	_, _, other := servingCert(t)
	_, follower := peers(t, cert, key, other, raGood, apRequire, apDenyAnonymous)
	if r := review(t, follower.Validating(), admissionv1.Delete, "", apRequire, false); r.Allowed || !strings.Contains(r.Result.Message, "retry") {
		t.Fatalf("not pinned: allowed=%v %v", r.Allowed, r.Result)
	}
	if n := testutil.ToFloat64(follower.Metrics.forwardFailures); n != 1 {
		t.Errorf("forward failures: %v", n)
	}
	// A CREATE that only adds checks is judged by the replica it reaches.
	if r := review(t, follower.Validating(), admissionv1.Create, strings.Replace(apDenyAnonymous, "web-deny-anonymous", "web-deny-more", 1), "", false); !r.Allowed {
		t.Errorf("a DENY policy's CREATE: %s", r.Result.Message)
	}
}

// TestRoute: where a write that may open is judged, as the Lease stands.
func TestRoute(t *testing.T) {
	l := &Leader{Lease: &resourcelock.LeaseLock{LockConfig: resourcelock.ResourceLockConfig{Identity: "https://10.0.0.1:9443"}}}
	l.client.Store(l.peerClient())
	if _, err := l.route(false); err == nil {
		t.Error("no leader known: judged")
	}
	other := "https://10.0.0.2:9443"
	l.current.Store(&other)
	if address, err := l.route(false); err != nil || address != other {
		t.Errorf("another leads: %q %v", address, err)
	}
	if _, err := l.route(true); err == nil {
		t.Error("forwarded to a replica that does not lead: judged")
	}
	now := time.Now()
	l.leadingSince.Store(&now)
	if _, err := l.route(false); err == nil || l.settled() {
		t.Error("leading since now: judged")
	}
	before := now.Add(-leaderSettle)
	l.leadingSince.Store(&before)
	if address, err := l.route(true); err != nil || address != "" || !l.settled() {
		t.Errorf("leading: %q %v", address, err)
	}
	var none *Leader
	if address, err := none.route(false); err != nil || address != "" {
		t.Errorf("no Leader: %q %v", address, err)
	}
}
