package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckExitCodes pins the CI contract: 0 clean, 1 findings at --fail-on, 2 usage or input.
func TestCheckExitCodes(t *testing.T) {
	seeds := "../../examples/seeds/"
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("kind: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	warnOnly := seeds + "04-transparent-user-auth/unsafe.yaml"
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"check", "-f", seeds + "01-aks-ingress-entra/fixed.yaml", "-o", "json"}, 0},
		{[]string{"check", "-f", seeds + "01-aks-ingress-entra/unsafe.yaml", "-o", "json"}, exitFindings},
		{[]string{"check", "-f", warnOnly, "-o", "json"}, 0},
		{[]string{"check", "-f", warnOnly, "-o", "json", "--fail-on", "warn"}, exitFindings},
		{[]string{"check", seeds, "-o", "sarif"}, exitUsage}, // the unsafe and fixed variants name the same objects
		{[]string{"check"}, exitUsage},
		{[]string{"check", "-f", broken}, exitUsage},
		{[]string{"check", "-f", filepath.Join(dir, "missing")}, exitUsage},
		{[]string{"check", "-f", warnOnly, "-o", "xml"}, exitUsage},
		{[]string{"check", "-f", warnOnly, "--fail-on", "info"}, exitUsage},
		{[]string{"check", "-f", warnOnly, "--config", warnOnly}, exitUsage}, // not guardrails
		{[]string{"check", "--no-such-flag"}, exitUsage},
		{[]string{"rules"}, 0},
		{[]string{"version"}, 0},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		if got := run(c.args, strings.NewReader(""), &stdout, &stderr); got != c.want {
			t.Errorf("meshguard %v: exit %d, want %d\n%s", c.args, got, c.want, stderr.String())
		}
	}
}

// TestCheckProtoNamedField: a DENY policy whose only field is spelt by its proto name
// (the CRD schema does not know it: the cluster would run a policy that denies nothing) is
// bad input, named by file, document and field; not a clean bundle.
func TestCheckProtoNamedField(t *testing.T) {
	bundle := filepath.Join(t.TempDir(), "deny.yaml")
	if err := os.WriteFile(bundle, []byte(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {not_request_principals: ["*"]}}]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if got := run([]string{"check", "-f", bundle}, nil, io.Discard, &stderr); got != exitUsage {
		t.Errorf("exit %d, want %d", got, exitUsage)
	}
	for _, want := range []string{bundle + ":14 (document 2)", `AuthorizationPolicy "require-jwt"`, `unknown field "spec.rules[0].from[0].source.not_request_principals"`, `"notRequestPrincipals"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not name %s:\n%s", want, stderr.String())
		}
	}
}

// TestCheckConfig applies a guardrail file: MG301 raised to deny turns a warning into a failure.
func TestCheckConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "guardrails.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: strict}\nspec:\n  rules: {MG101: \"off\", MG301: deny}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := "../../examples/seeds/05-authn-authz-basics/unsafe.yaml"
	if got := run([]string{"check", "-f", seed, "--config", cfg}, nil, io.Discard, io.Discard); got != exitFindings {
		t.Errorf("with MG301 at deny: exit %d", got)
	}
	if err := os.WriteFile(cfg, []byte("apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: lax}\nspec:\n  rules: {MG101: \"off\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"check", "-f", seed, "--config", cfg}, nil, io.Discard, io.Discard); got != 0 {
		t.Errorf("with MG101 off: exit %d", got)
	}
}

// TestCheckStdin reads a bundle from standard input, as `kustomize build | meshguard check -f -`.
func TestCheckStdin(t *testing.T) {
	data, err := os.ReadFile("../../examples/seeds/03-inline-jwk/unsafe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if got := run([]string{"check", "-f", "-"}, bytes.NewReader(data), &out, io.Discard); got != exitFindings {
		t.Errorf("exit %d", got)
	}
	if !strings.Contains(out.String(), "MG101 ra-missing-audiences") || !strings.Contains(out.String(), "-:2 (document 1)") {
		t.Errorf("output:\n%s", out.String())
	}
}
