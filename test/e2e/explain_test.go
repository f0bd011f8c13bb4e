package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExplainLive: `meshguard explain --cluster` and `meshguard coverage --cluster`, read
// from the API server, give the answers the same objects give from files.
func TestExplainLive(t *testing.T) {
	const objects = `apiVersion: v1
kind: Namespace
metadata: {name: explain-live}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-0, namespace: explain-live, labels: {app: httpbin}}
spec: {containers: [{name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0}]}
---
apiVersion: v1
kind: Pod
metadata: {name: admin-0, namespace: explain-live, labels: {app: admin}}
spec: {containers: [{name: admin, image: registry.example/admin:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: explain-live}
spec:
  selector: {app: httpbin}
  ports: [{port: 8000}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-example, namespace: explain-live}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules: [{issuer: testing@secure.istio.io, jwksUri: https://idp.example.com/keys, audiences: [httpbin]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: explain-live}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{from: [{source: {requestPrincipals: ["testing@secure.istio.io/*"]}}], to: [{operation: {notPaths: ["/healthz"]}}]}, {to: [{operation: {paths: ["/healthz"]}}]}]
`
	file := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(file, []byte(objects), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := kubectl(t, objects, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	meshguard := func(args ...string) map[string]any {
		t.Helper()
		out, err := exec.Command(local.Binary, args...).Output()
		var v map[string]any
		if jerr := json.Unmarshal(out, &v); err != nil && len(out) == 0 || jerr != nil {
			t.Fatalf("meshguard %v: %v %v\n%s", args, err, jerr, out)
		}
		return v
	}
	live := []string{"--cluster", "--kubeconfig", local.Kubeconfig}
	offline := []string{"-f", file}
	for verdict, request := range map[string][]string{
		"deny":            {"--to", "Pod/explain-live/httpbin-0", "--path", "/headers"},
		"allow":           {"--to", "Service/explain-live/httpbin", "--path", "/headers", "--token", "iss=testing@secure.istio.io,sub=alice,aud=httpbin"},
		"unauthenticated": {"--to", "Pod/explain-live/httpbin-0", "--path", "/headers", "--token", "iss=testing@secure.istio.io,sub=alice,aud=other"},
		"allow ":          {"--to", "Pod/explain-live/httpbin-0", "--path", "/healthz"},
	} {
		args := append([]string{"explain", "-o", "json"}, request...)
		fromCluster, fromFiles := meshguard(append(args, live...)...), meshguard(append(args, offline...)...)
		if fromCluster["verdict"] != strings.TrimSpace(verdict) {
			t.Errorf("%v: %v from the cluster, want %s", request, fromCluster["verdict"], verdict)
		}
		for _, field := range []string{"verdict", "status", "decidedBy", "path"} {
			if !reflect.DeepEqual(fromCluster[field], fromFiles[field]) {
				t.Errorf("%v: %s from the cluster %v, from files %v", request, field, fromCluster[field], fromFiles[field])
			}
		}
	}
	coverage := []string{"coverage", "-n", "explain-live", "-o", "json"}
	fromCluster, fromFiles := meshguard(append(coverage, live...)...), meshguard(append(coverage, offline...)...)
	want := map[string]any{"partial": 1.0, "open": 1.0}
	if !reflect.DeepEqual(fromCluster["summary"], fromFiles["summary"]) || !reflect.DeepEqual(fromCluster["summary"], want) {
		t.Errorf("coverage from the cluster %v, from files %v", fromCluster["summary"], fromFiles["summary"])
	}
}
