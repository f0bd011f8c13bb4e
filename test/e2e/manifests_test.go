package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// render builds a kustomization of manifests/ and splits out the webhook configurations.
func render(t *testing.T, dir string) (objects string, webhooks []string) {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(repoRoot(), "manifests", dir)).Output()
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	return splitWebhooks(t, string(out))
}

// splitWebhooks separates the webhook configurations from the rest: the suite already runs
// those, pointed at its local meshguard, under the same names.
func splitWebhooks(t *testing.T, rendered string) (objects string, webhooks []string) {
	t.Helper()
	var kept []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "kind: ValidatingWebhookConfiguration") || strings.Contains(doc, "kind: MutatingWebhookConfiguration") {
			webhooks = append(webhooks, doc)
		} else {
			kept = append(kept, doc)
		}
	}
	if len(webhooks) != 2 {
		t.Fatalf("%d webhook configurations, want 2", len(webhooks))
	}
	return strings.Join(kept, "\n---\n"), webhooks
}

// TestBaseManifests applies manifests/base (all but the webhook configurations, which the
// suite already runs with a local address) to the real API server, and checks that the
// ServiceAccount can read what meshguard watches and nothing more.
func TestBaseManifests(t *testing.T) {
	objects, _ := render(t, "base")
	if _, stderr, err := kubectl(t, objects, "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	sa := "--as=system:serviceaccount:meshguard-system:meshguard"
	for _, c := range []struct {
		verb, resource string
		allowed        bool
	}{
		{"watch", "pods", true},
		{"list", "namespaces", true},
		{"watch", "services", true},
		{"watch", "requestauthentications.security.istio.io", true},
		{"list", "authorizationpolicies.security.istio.io", true},
		{"watch", "peerauthentications.security.istio.io", true},
		{"watch", "meshguardrails.meshguard.io", true},
		{"watch", "gateways.gateway.networking.k8s.io", true},
		{"list", "gatewayclasses.gateway.networking.k8s.io", true},
		{"watch", "serviceentries.networking.istio.io", true},
		{"list", "httproutes.gateway.networking.k8s.io", true},
		{"create", "reports.openreports.io", true},
		{"update", "policyreports.wgpolicyk8s.io", true},
		{"watch", "reports.openreports.io", false},
		{"update", "gateways.gateway.networking.k8s.io", false},
		{"get", "secrets", false},
		{"create", "requestauthentications.security.istio.io", false},
		{"update", "pods", false},
		{"patch", "validatingwebhookconfigurations.admissionregistration.k8s.io", false},
		{"list", "deployments.apps", false},
	} {
		stdout, _, _ := kubectl(t, "", "auth", "can-i", sa, "-A", c.verb, c.resource)
		if got := strings.TrimSpace(stdout) == "yes"; got != c.allowed {
			t.Errorf("can %s %s: %q, want allowed=%v", c.verb, c.resource, strings.TrimSpace(stdout), c.allowed)
		}
	}
}

// installCertManagerCRDs installs cert-manager's CRDs from its Go module, and meshguard's
// namespace, for the manifests that speak of both.
func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("finding the cert-manager module: %v", err)
	}
	crds := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, stderr, err := kubectl(t, "", "apply", "--server-side", "-f", crds); err != nil {
		t.Fatalf("cert-manager CRDs: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: meshguard-system}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(stderr)
	}
	waitFor(t, func() bool { // new CRDs take a moment to be served
		_, _, err := kubectl(t, "", "get", "certificates.cert-manager.io", "-A")
		return err == nil
	})
}

// TestCertManagerOverlay installs cert-manager's CRDs from its Go module and dry-runs the
// whole cert-manager overlay on the server; the serving Certificate must cover the names
// the API server calls meshguard by.
func TestCertManagerOverlay(t *testing.T) {
	installCertManagerCRDs(t)
	objects, webhooks := render(t, "overlays/cert-manager")
	if _, stderr, err := kubectl(t, objects, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"); err != nil {
		t.Fatalf("server-side dry run of the overlay: %v\n%s", err, stderr)
	}
	for _, doc := range webhooks {
		var cfg metav1.PartialObjectMetadata
		if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.Annotations["cert-manager.io/inject-ca-from"]; got != "meshguard-system/meshguard-serving-cert" {
			t.Errorf("%s %s: inject-ca-from %q", cfg.Kind, cfg.Name, got)
		}
	}
	var serving *certmanagerv1.Certificate
	for _, doc := range strings.Split(objects, "\n---\n") {
		var c certmanagerv1.Certificate
		if err := yaml.Unmarshal([]byte(doc), &c); err == nil && c.Kind == "Certificate" && c.Name == "meshguard-serving-cert" {
			serving = &c
		}
	}
	if serving == nil {
		t.Fatal("the overlay has no meshguard-serving-cert Certificate")
	}
	for _, name := range []string{"meshguard.meshguard-system.svc", "meshguard.meshguard-system.svc.cluster.local"} {
		if !slices.Contains(serving.Spec.DNSNames, name) {
			t.Errorf("serving certificate lacks %s: %v", name, serving.Spec.DNSNames)
		}
	}
	if serving.Spec.SecretName != "meshguard-serving-cert" || serving.Spec.IssuerRef.Name != "meshguard-ca" {
		t.Errorf("serving certificate: secret %q, issuer %q", serving.Spec.SecretName, serving.Spec.IssuerRef.Name)
	}
}

// TestSelfSignedOverlay applies the self-signed overlay and checks that its extra rights
// reach exactly its own Secret and its own webhook configurations.
func TestSelfSignedOverlay(t *testing.T) {
	objects, _ := render(t, "overlays/self-signed")
	if !strings.Contains(objects, "- --self-signed") || !strings.Contains(objects, "emptyDir:") {
		t.Fatalf("the overlay does not run the bootstrap:\n%s", objects)
	}
	if _, stderr, err := kubectl(t, objects, "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	sa := "--as=system:serviceaccount:meshguard-system:meshguard"
	for _, c := range []struct {
		args    []string
		allowed bool
	}{
		{[]string{"get", "secrets/meshguard-serving-cert", "-n", "meshguard-system"}, true},
		{[]string{"update", "secrets/meshguard-serving-cert", "-n", "meshguard-system"}, true},
		{[]string{"get", "secrets/some-other-secret", "-n", "meshguard-system"}, false},
		{[]string{"list", "secrets", "-n", "meshguard-system"}, false},
		{[]string{"get", "secrets/meshguard-serving-cert", "-n", "default"}, false},
		{[]string{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/meshguard"}, true},
		{[]string{"update", "mutatingwebhookconfigurations.admissionregistration.k8s.io/meshguard"}, true},
		{[]string{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/istio-validator"}, false},
		{[]string{"delete", "validatingwebhookconfigurations.admissionregistration.k8s.io/meshguard"}, false},
	} {
		stdout, _, _ := kubectl(t, "", append([]string{"auth", "can-i", sa}, c.args...)...)
		if got := strings.TrimSpace(stdout) == "yes"; got != c.allowed {
			t.Errorf("can %v: %q, want allowed=%v", c.args, strings.TrimSpace(stdout), c.allowed)
		}
	}
}
