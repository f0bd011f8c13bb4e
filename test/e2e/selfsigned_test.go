package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/test/cluster"
)

// selfSigned runs a second meshguard with --self-signed (and args), registered as webhook
// configurations of its own name for one namespace only, and waits until it is ready. stop
// ends the process and returns its log.
func selfSigned(t *testing.T, ns, name string, args ...string) (port int, stop func() string) {
	ctx := context.Background()
	namespace(t, ns, "")
	port, probePort := cluster.TestPort(t), cluster.TestPort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	validate, mutate := url+"/validate", url+"/mutate"
	fail, ignore, none, timeout := admregv1.Fail, admregv1.Ignore, admregv1.SideEffectClassNone, int32(5)
	only := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	adm := local.Kube.AdmissionregistrationV1()
	if _, err := adm.ValidatingWebhookConfigurations().Create(ctx, &admregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admregv1.ValidatingWebhook{{
			Name: "rotation.meshguard.io", ClientConfig: admregv1.WebhookClientConfig{URL: &validate},
			Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create},
				Rule: admregv1.Rule{APIGroups: []string{"security.istio.io"}, APIVersions: []string{"*"}, Resources: []string{"requestauthentications"}}}},
			FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: only,
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adm.ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}) })
	if _, err := adm.MutatingWebhookConfigurations().Create(ctx, &admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admregv1.MutatingWebhook{{
			Name: "rotation-coverage.meshguard.io", ClientConfig: admregv1.WebhookClientConfig{URL: &mutate},
			Rules: []admregv1.RuleWithOperations{{Operations: []admregv1.OperationType{admregv1.Create},
				Rule: admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: only,
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adm.MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}) })

	var log bytes.Buffer
	serve := exec.Command(local.Binary, append([]string{"serve", "--kubeconfig", local.Kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--cert-dir", t.TempDir(), "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--self-signed", "--namespace", ns, "--self-signed-secret", name, "--self-signed-hosts", "127.0.0.1",
		"--webhook-configuration", name, "--audit-interval", "0"}, args...)...) // the suite's meshguard audits
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	// stop ends the process; its log is read only after, while nothing writes to it.
	stop = func() string {
		_ = serve.Process.Kill()
		_, _ = serve.Process.Wait()
		return log.String()
	}
	t.Cleanup(func() { stop() })
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return port, stop
}

// TestSelfSignedRotation runs meshguard with --self-signed and a 24-second certificate,
// and sends requests through the API server while its certificate is re-issued: no request
// may fail, and the CA must not change.
func TestSelfSignedRotation(t *testing.T) {
	ctx := context.Background()
	const ns, name = "rotate", "meshguard-rotation"
	port, stop := selfSigned(t, ns, name, "--self-signed-validity", "24s", "--self-signed-check-interval", "1s")
	adm := local.Kube.AdmissionregistrationV1()

	secret, err := local.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := secret.Data["ca.crt"]
	for _, cfg := range []string{"validating", "mutating"} {
		var bundle []byte
		if cfg == "validating" {
			v, _ := adm.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
			bundle = v.Webhooks[0].ClientConfig.CABundle
		} else {
			m, _ := adm.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
			bundle = m.Webhooks[0].ClientConfig.CABundle
		}
		if !bytes.Equal(bundle, ca) {
			t.Fatalf("the %s configuration does not trust the Secret's CA", cfg)
		}
	}

	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: probe, namespace: rotate}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]\n"
	served := map[string]bool{}
	requests := 0
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); requests++ {
		if _, stderr, err := kubectl(t, ra, "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Fatalf("request %d failed during rotation: %v\n%s\nmeshguard's log:\n%s", requests, err, stderr, stop())
		}
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true}) // only reads the served certificate
		if err == nil {
			served[conn.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
			conn.Close()
		}
	}
	logged := stop()
	if len(served) < 2 {
		t.Errorf("the served certificate was not re-issued in 40s (%d seen)\n%s", len(served), logged)
	}
	after, err := local.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Data["ca.crt"], ca) {
		t.Error("the CA changed during rotation")
	}
	if !strings.Contains(logged, "re-issued the serving certificate") {
		t.Errorf("no re-issue logged:\n%s", logged)
	}
	t.Logf("%d requests through the API server, %d serving certificates, none failed", requests, len(served))
}

// TestSelfSignedCABundleRestored: a webhook configuration whose caBundle is wiped (a GitOps
// sync of the manifests, a reinstall) gets the CA back at once, not at the next hourly
// round.
func TestSelfSignedCABundleRestored(t *testing.T) {
	ctx := context.Background()
	const ns, name = "restore", "meshguard-restore"
	selfSigned(t, ns, name)
	adm := local.Kube.AdmissionregistrationV1()
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := v.Webhooks[0].ClientConfig.CABundle
	if len(ca) == 0 {
		t.Fatal("no CA injected")
	}
	v.Webhooks[0].ClientConfig.CABundle = nil
	if _, err := adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v, err := adm.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		return err == nil && bytes.Equal(v.Webhooks[0].ClientConfig.CABundle, ca)
	})
}
