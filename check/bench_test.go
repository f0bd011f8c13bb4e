package check

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/meshguard/meshguard/policy"
)

// bundle generates a realistic bundle of about n objects: per namespace 60 Deployments, 10
// Services, 10 RequestAuthentications, 10 AuthorizationPolicies and a PeerAuthentication,
// plus mesh-wide policies in the root namespace.
func bundle(n int) []byte {
	const perNamespace = 91
	var b bytes.Buffer
	b.WriteString("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
	b.WriteString("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-no-token, namespace: istio-system}\nspec:\n  selector: {matchLabels: {jwt: required}}\n  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n")
	for ns := 0; ns*perNamespace < n; ns++ {
		fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: ns-%d}\nspec: {mtls: {mode: STRICT}}\n", ns)
		for i := 0; i < 60; i++ {
			fmt.Fprintf(&b, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {app: app-%d}}\n  template:\n    metadata: {labels: {app: app-%d, team: t%d, jwt: required}}\n    spec: {containers: [{name: app, image: \"registry.example/app:%d\"}]}\n", i, ns, i, i, i%10, i)
		}
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: app-%d, namespace: ns-%d}\nspec:\n  selector: {app: app-%d}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n", i, ns, i)
			fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {team: t%d}}\n  jwtRules:\n  - issuer: https://idp.example.com/t%d\n    jwksUri: https://idp.example.com/t%d/keys\n    audiences: [api://ns-%d]\n", i, ns, i, i, i, ns)
			fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {team: t%d}}\n  rules:\n  - from: [{source: {requestPrincipals: [\"https://idp.example.com/t%d/*\"]}}]\n    to: [{operation: {methods: [GET], paths: [\"/api/*\"]}}]\n", i, ns, i, i)
		}
	}
	return b.Bytes()
}

// BenchmarkCheck is `meshguard check` over a generated bundle: parse, load and judge.
// The target: 10,000 objects in under a second, memory linear in the bundle.
func BenchmarkCheck(b *testing.B) {
	engine := policy.NewEngine()
	for _, n := range []int{1000, 10000, 20000} {
		data := bundle(n)
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				l := &Loader{Namespace: "default", Stdin: bytes.NewReader(data), Engine: engine}
				bun, err := l.Load("-")
				if err != nil {
					b.Fatal(err)
				}
				if r := Run(engine, bun); r.Summary.Deny > 0 {
					b.Fatalf("generated bundle has deny findings: %+v", r.Results[0])
				}
			}
		})
	}
}
