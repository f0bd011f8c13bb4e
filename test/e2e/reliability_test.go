package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshguard/meshguard/certs"
	"github.com/meshguard/meshguard/test/cluster"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// TestMeshguardDown: with meshguard killed and its webhooks still registered, Pods are
// created (the Pod webhooks fail open) and the security kinds are refused (they fail
// closed); once meshguard is back, both are judged again.
func TestMeshguardDown(t *testing.T) {
	namespace(t, "outage", "")
	const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, namespace: outage, labels: {app: web}}\nspec: {containers: [{name: web, image: registry.example/web:1}]}\n"
	// An RA with no audiences: MG101 denies it when meshguard judges.
	const ra = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: outage}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys}]\n"
	if err := local.KillMeshguard(); err != nil {
		t.Fatal(err)
	}
	running := false
	defer func() {
		if !running {
			if err := local.RestartMeshguard(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}()
	if _, stderr, err := kubectl(t, strings.Replace(pod, "NAME", "while-down", 1), "apply", "-f", "-"); err != nil {
		t.Errorf("a Pod while meshguard is down: %v\n%s", err, stderr)
	}
	_, stderr, err := kubectl(t, ra, "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, `failed calling webhook "security.meshguard.io"`) {
		t.Errorf("a RequestAuthentication while meshguard is down: err=%v\n%s", err, stderr)
	}
	if err := local.RestartMeshguard(context.Background()); err != nil {
		t.Fatal(err)
	}
	running = true
	_, stderr, err = kubectl(t, ra, "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, "MG101 ra-missing-audiences") {
		t.Errorf("a RequestAuthentication once meshguard is back: err=%v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, strings.Replace(pod, "NAME", "after-restart", 1), "apply", "-f", "-"); err != nil {
		t.Errorf("a Pod once meshguard is back: %v\n%s", err, stderr)
	}
}

// TestConcurrentDeletes: the two policies that each make a workload require a token,
// deleted at once through kubectl: at most one DELETE passes, and the workload keeps one.
func TestConcurrentDeletes(t *testing.T) {
	protectedWeb(t, "race")
	denyAnonymous := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-deny-anonymous, namespace: race}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
`
	if _, stderr, err := kubectl(t, denyAnonymous, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	policies := []string{"authorizationpolicy/web-require-jwt", "authorizationpolicy/web-deny-anonymous"}
	// Each DELETE alone is allowed once meshguard's cache holds both policies: each dry run
	// by a user of its own, as one user's dry runs count for each other.
	waitFor(t, func() bool {
		for i, p := range policies {
			if _, _, err := kubectl(t, "", "delete", "-n", "race", p, "--dry-run=server", fmt.Sprintf("--as=dry-run-%d", i), "--as-group=system:masters"); err != nil {
				return false
			}
		}
		return true
	})
	errs := make(chan error, len(policies))
	for _, p := range policies {
		go func() {
			_, _, err := kubectl(t, "", "delete", "-n", "race", p)
			errs <- err
		}()
	}
	deleted := 0
	for range policies {
		if <-errs == nil {
			deleted++
		}
	}
	if deleted != 1 {
		t.Errorf("%d of the two DELETEs passed", deleted)
	}
	if out, _, _ := kubectl(t, "", "get", "authorizationpolicies", "-n", "race", "-o", "name"); strings.Count(out, "authorizationpolicy") != 1 {
		t.Errorf("policies left: %q", out)
	}
}

// TestAPIServerRestart: kube-apiserver restarts while a change that would open a workload
// is tried over and over. meshguard's watches break; it reports not ready once they have
// failed for StaleAfter (security writes refused meanwhile), and is ready again once they
// deliver; the change is never allowed.
func TestAPIServerRestart(t *testing.T) {
	protectedWeb(t, "restart")
	client, err := dynamic.NewForConfig(local.Config)
	if err != nil {
		t.Fatal(err)
	}
	aps := client.Resource(schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}).Namespace("restart")
	deleteAP := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return aps.Delete(ctx, "web-require-jwt", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	}
	waitFor(t, func() bool { err := deleteAP(); return err != nil && strings.Contains(err.Error(), "MG303") })

	var tries, wrongAllows atomic.Int32
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tries.Add(1)
			if deleteAP() == nil {
				wrongAllows.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := local.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			_ = local.StartAPIServer(context.Background())
		}
	}()
	deadline := time.Now().Add(45 * time.Second)
	for local.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("meshguard stayed ready with the API server gone")
		}
		time.Sleep(250 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := local.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	started = true
	for !local.Ready() {
		if ctx.Err() != nil {
			t.Fatal("meshguard not ready again after kube-apiserver came back")
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Load on the restarted API server too, then stop it.
	time.Sleep(2 * time.Second)
	close(stop)
	<-loadDone
	if n := wrongAllows.Load(); n > 0 {
		t.Errorf("%d of %d DELETEs allowed", n, tries.Load())
	}
	if err := deleteAP(); err == nil || !strings.Contains(err.Error(), "MG303") {
		t.Errorf("after the restart: %v", err)
	}
}

// TestSlowClients: 200 connections to `meshguard serve` that send a body slowly (half of
// them announcing 3 MiB) and stall. A normal review is still answered within a second, the
// process stays under its container's memory limit, and the slow connections are cut.
func TestSlowClients(t *testing.T) {
	tlsConfig := apiServerTLS(t)
	host := strings.TrimPrefix(local.WebhookURL, "https://")
	var slow []*tls.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for i := range 200 {
		c, err := tls.Dial("tcp", host, tlsConfig)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		size := 10 << 10
		if i%2 == 0 {
			size = 3 << 20
		}
		fmt.Fprintf(c, "POST /validate HTTP/1.1\r\nHost: meshguard\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"request\":", size)
		slow = append(slow, c)
	}
	start := time.Now()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"slow","name":"p","operation":"CREATE","userInfo":{},` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"slow"},"spec":{"containers":[{"name":"c","image":"i"}]}}}}`
	for i := range 5 {
		asked := time.Now()
		resp, err := client.Post(local.WebhookURL+"/validate", "application/json", strings.NewReader(review))
		if err != nil {
			t.Fatalf("review %d: %v", i, err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if elapsed := time.Since(asked); resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"allowed":true`) || elapsed > time.Second {
			t.Errorf("review %d: HTTP %d after %v: %.200s", i, resp.StatusCode, elapsed, out)
		}
	}
	rss := residentBytes(t, local.MeshguardPID())
	if rss > 512<<20 {
		t.Errorf("meshguard holds %d MiB, over its container's limit", rss>>20)
	}
	t.Logf("meshguard's resident memory with 200 stalled connections: %d MiB", rss>>20)
	// The server cuts each: at once when its large body is over the budget, at the read
	// deadline (10 s) otherwise.
	buf := make([]byte, 512)
	for i, c := range slow {
		_ = c.SetReadDeadline(start.Add(20 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("connection %d still open after 20 s", i)
				}
				break
			}
		}
	}
}

// residentBytes is a process's resident memory, from /proc.
func residentBytes(t *testing.T, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestLargeDryRuns: ten server-side dry runs at once of a 1.8 MB AuthorizationPolicy with
// 50,000 request principals: each is answered within the webhook's timeout, with a bounded
// response (at most ten warnings and a count of the rest).
func TestLargeDryRuns(t *testing.T) {
	namespace(t, "large", "")
	principals := make([]any, 50000)
	for i := range principals {
		principals[i] = fmt.Sprintf("https://issuer%d.example.com/subject-%d", i, i)
	}
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"name": "many-principals", "namespace": "large"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"rules":    []any{map[string]any{"from": []any{map[string]any{"source": map[string]any{"requestPrincipals": principals}}}}},
		},
	}}
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			warnings := &countingWarnings{}
			cfg := rest.CopyConfig(local.Config)
			cfg.WarningHandler = warnings
			cfg.Timeout = 30 * time.Second
			client, err := dynamic.NewForConfig(cfg)
			if err != nil {
				errs <- err
				return
			}
			// Past the webhook's timeout the API server would fail the call: "failed
			// calling webhook".
			asked := time.Now()
			_, err = client.Resource(schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}).
				Namespace("large").Create(context.Background(), ap, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			t.Logf("answered in %v with %d warnings", time.Since(asked).Round(time.Millisecond), warnings.n.Load())
			switch {
			case err != nil && (!strings.Contains(err.Error(), "meshguard denied") || len(err.Error()) > 64<<10):
				errs <- fmt.Errorf("%.300s", err)
			case warnings.n.Load() > 11:
				errs <- fmt.Errorf("%d warnings", warnings.n.Load())
			default:
				errs <- nil
			}
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// countingWarnings counts the warnings of the responses a client receives.
type countingWarnings struct{ n atomic.Int32 }

func (w *countingWarnings) HandleWarningHeader(code int, _, _ string) {
	if code == 299 {
		w.n.Add(1)
	}
}

// TestTLSSuites: meshguard takes TLS 1.2 with AEAD suites only, and nothing older.
func TestTLSSuites(t *testing.T) {
	apiServer := apiServerTLS(t)
	host := strings.TrimPrefix(local.WebhookURL, "https://")
	for _, c := range []struct {
		name   string
		config *tls.Config
		ok     bool
	}{
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		{"TLS 1.2, AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, true},
		{"TLS 1.2, CBC-SHA", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
	} {
		c.config.RootCAs, c.config.Certificates = apiServer.RootCAs, apiServer.Certificates
		conn, err := tls.Dial("tcp", host, c.config)
		if err == nil {
			conn.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: handshake error %v", c.name, err)
		}
	}
}

// TestAudit: what runs in the cluster is reported without any write to it (a
// RequestAuthentication nothing enforces: MG301); fixing it removes the result, deleting it
// removes its Report.
func TestAudit(t *testing.T) {
	namespace(t, "audited", "")
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: audited}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]\n"
	if _, stderr, err := kubectl(t, ra, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	results := func() (string, bool) {
		out, _, err := kubectl(t, "", "get", "reports.openreports.io", "-n", "audited", "meshguard-requestauthentication-web-jwt",
			"-o", "jsonpath={range .results[*]}{.policy}={.result} {end}")
		return out, err == nil
	}
	// Within 30 s of a change; and, where an earlier test killed meshguard, of the 15 s the
	// killed process's Lease takes to expire.
	within(t, "the RequestAuthentication reported", 45*time.Second, func() bool { r, ok := results(); return ok && strings.Contains(r, "MG301=warn") })
	ap := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: web-require-jwt, namespace: audited}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules: [{from: [{source: {requestPrincipals: [\"https://idp.example.com/*\"]}}]}]\n"
	if _, stderr, err := kubectl(t, ap, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	within(t, "MG301 gone once fixed", 30*time.Second, func() bool { r, _ := results(); return !strings.Contains(r, "MG301") })
	// The RequestAuthentication first: the policy alone protects nothing (MG303 otherwise).
	for _, o := range []string{"requestauthentication/web-jwt", "authorizationpolicy/web-require-jwt"} {
		if _, stderr, err := kubectl(t, "", "delete", "-n", "audited", o); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
	}
	within(t, "the deleted policy's report gone", 30*time.Second, func() bool { _, ok := results(); return !ok })
}

// TestAuditFailover: two `meshguard serve` processes audit with one Lease: the one holding
// it writes; killed, the other takes the Lease and keeps the same reports, none duplicated,
// none missing.
func TestAuditFailover(t *testing.T) {
	ctx := context.Background()
	namespace(t, "failover", "")
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: failover}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]\n"
	if _, stderr, err := kubectl(t, ra, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	reports := func() map[string]string {
		t.Helper()
		out, stderr, err := kubectl(t, "", "get", "reports.openreports.io", "-A", "-l", "app.kubernetes.io/managed-by=meshguard",
			"-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}={range .results[*]}{.policy}:{.result},{end}{"\n"}{end}`)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				got[k] = v
			}
		}
		return got
	}
	const report = "failover/meshguard-requestauthentication-web-jwt"
	holder := func() string {
		lease, err := local.Kube.CoordinationV1().Leases("default").Get(ctx, "meshguard-audit", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	within(t, "the RequestAuthentication reported", 45*time.Second, func() bool { return strings.Contains(reports()[report], "MG301:warn") })
	first := holder()

	serveReplica(t, "--namespace", "default")
	time.Sleep(5 * time.Second) // standing for the Lease the first holds
	if h := holder(); h != first {
		t.Fatalf("the Lease went to %q while %q held it", h, first)
	}
	before := reports()

	if err := local.KillMeshguard(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := local.RestartMeshguard(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	within(t, "the second replica takes the Lease", 45*time.Second, func() bool { h := holder(); return h != "" && h != first })
	// The second writes: a report lost is written again on its next pass (a Namespace change
	// starts one).
	if _, stderr, err := kubectl(t, "", "delete", "reports.openreports.io", "-n", "failover", "meshguard-requestauthentication-web-jwt"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, "", "label", "namespace", "failover", "audited=again"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	within(t, "the report written again by the second replica", 30*time.Second, func() bool { _, ok := reports()[report]; return ok })
	if after := reports(); !reflect.DeepEqual(before, after) {
		t.Errorf("the reports changed with the Lease:\nbefore %v\nafter  %v", before, after)
	}
}

// serveReplica runs another `meshguard serve` against the test cluster, with a certificate
// of its own, until the test ends.
func serveReplica(t *testing.T, args ...string) {
	t.Helper()
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if err := bundle.Write(certDir); err != nil {
		t.Fatal(err)
	}
	replica := exec.Command(local.Binary, append([]string{"serve", "--kubeconfig", local.Kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(cluster.TestPort(t)),
		"--cert-dir", certDir, "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", cluster.TestPort(t))}, args...)...)
	var log bytes.Buffer
	replica.Stdout, replica.Stderr = &log, &log
	if err := replica.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = replica.Process.Kill()
		_, _ = replica.Process.Wait()
		if t.Failed() {
			t.Logf("the replica's log:\n%s", log.String())
		}
	})
}

// TestAuditPolicyReports: where asked (or where only that CRD is installed), the audit
// writes wgpolicyk8s.io PolicyReports, with the results a Report carries, that the real
// CRD's schema accepts.
func TestAuditPolicyReports(t *testing.T) {
	namespace(t, "wgpolicy", "")
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: wgpolicy}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]\n"
	if _, stderr, err := kubectl(t, ra, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	// A Lease of its own (another namespace): it audits beside the replica that writes Reports.
	serveReplica(t, "--namespace", "kube-public", "--audit-reports", "wgpolicyk8s")
	var got string
	within(t, "the PolicyReport written", 45*time.Second, func() bool {
		out, _, err := kubectl(t, "", "get", "policyreports.wgpolicyk8s.io", "-n", "wgpolicy", "meshguard-requestauthentication-web-jwt",
			"-o", `jsonpath={.scope.kind}/{.scope.name} warn={.summary.warn} {range .results[*]}{.policy}={.result}:{.category} {end}`)
		got = out
		return err == nil
	})
	if !strings.HasPrefix(got, "RequestAuthentication/web-jwt warn=") || !strings.Contains(got, "MG301=warn:cross-resource") {
		t.Errorf("PolicyReport: %s", got)
	}
}

// within polls until cond holds, for at most limit: the audit works from watches and passes.
func within(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\nmeshguard's log:\n%s", what, limit, local.Log())
		}
	}
}
