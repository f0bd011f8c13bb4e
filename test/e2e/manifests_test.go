package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBaseManifests applies manifests/base (all but the webhook configurations, which the
// suite already runs with a local address) to the real API server, and checks that the
// ServiceAccount can read what meshguard watches and nothing more.
func TestBaseManifests(t *testing.T) {
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(repoRoot(), "manifests", "base")).Output()
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	var kept []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if !strings.Contains(doc, "kind: ValidatingWebhookConfiguration") && !strings.Contains(doc, "kind: MutatingWebhookConfiguration") {
			kept = append(kept, doc)
		}
	}
	if _, stderr, err := kubectl(t, strings.Join(kept, "\n---\n"), "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
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
