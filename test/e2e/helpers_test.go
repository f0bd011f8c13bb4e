package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

type jwtRule = securityv1beta1.JWTRule

func selector(app string) *typev1beta1.WorkloadSelector {
	return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
}

// requirePrincipal is an ALLOW rule that needs a token from the given principal pattern.
func requirePrincipal(principal string) []*securityv1beta1.Rule {
	return []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{RequestPrincipals: []string{principal}}}}}}
}

// protectedWeb is a RequestAuthentication and an ALLOW policy requiring its tokens for the
// workloads labelled app=web of namespace ns, created in it: deleting the policy is MG303.
func protectedWeb(t *testing.T, ns string) {
	t.Helper()
	namespace(t, ns, "")
	bundle := strings.ReplaceAll(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`, "NS", ns)
	if _, stderr, err := kubectl(t, bundle, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
}

// apiServerTLS is the TLS configuration of a client of meshguard's webhooks that presents
// the API server's client certificate, as the API server does.
func apiServerTLS(t *testing.T) *tls.Config {
	t.Helper()
	client, err := local.APIServerClient()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(local.CA)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{client}}
}
