// Package manifests generates the bundles `meshguard check` is measured on: per namespace 60
// Deployments, 10 Services, 10 RequestAuthentications, 10 AuthorizationPolicies and a
// PeerAuthentication (91 objects), plus mesh-wide policies in the root namespace, none of
// which meshguard denies.
package manifests

import (
	"bytes"
	"fmt"
)

// PerNamespace is the objects of one namespace's file.
const PerNamespace = 91

// Files is a bundle of about n objects as a repository lays it out: one file for the root
// namespace's policies, then one per namespace.
func Files(n int) [][]byte {
	var root bytes.Buffer
	root.WriteString("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
	root.WriteString("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-no-token, namespace: istio-system}\nspec:\n  selector: {matchLabels: {jwt: required}}\n  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n")
	files := [][]byte{root.Bytes()}
	for ns := 0; ns*PerNamespace < n; ns++ {
		var b bytes.Buffer
		fmt.Fprintf(&b, "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: ns-%d}\nspec: {mtls: {mode: STRICT}}\n", ns)
		for i := 0; i < 60; i++ {
			fmt.Fprintf(&b, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {app: app-%d}}\n  template:\n    metadata: {labels: {app: app-%d, team: t%d, jwt: required}}\n    spec: {containers: [{name: app, image: \"registry.example/app:%d\"}]}\n", i, ns, i, i, i%10, i)
		}
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: app-%d, namespace: ns-%d}\nspec:\n  selector: {app: app-%d}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n", i, ns, i)
			fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {team: t%d}}\n  jwtRules:\n  - issuer: https://idp.example.com/t%d\n    jwksUri: https://idp.example.com/t%d/keys\n    audiences: [api://ns-%d]\n", i, ns, i, i, i, ns)
			fmt.Fprintf(&b, "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-%d, namespace: ns-%d}\nspec:\n  selector: {matchLabels: {team: t%d}}\n  rules:\n  - from: [{source: {requestPrincipals: [\"https://idp.example.com/t%d/*\"]}}]\n    to: [{operation: {methods: [GET], paths: [\"/api/*\"]}}]\n", i, ns, i, i)
		}
		files = append(files, b.Bytes())
	}
	return files
}

// Stream is the bundle of Files(n) as one YAML stream.
func Stream(n int) []byte {
	return bytes.Join(Files(n), []byte("---\n"))
}
