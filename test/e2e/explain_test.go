package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExplainLive: `meshguard explain --cluster` and `meshguard coverage --cluster`, read
// from the API server, give the answers a dump of the same objects gives from files.
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
	if _, stderr, err := kubectl(t, objects, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	file := dumpCluster(t)
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
		"deny":            {"--to", "Pod/explain-live/httpbin-0", "--path", "/headers", "--from-namespace", "shop"},
		"allow":           {"--to", "Service/explain-live/httpbin", "--path", "/headers", "--from-namespace", "shop", "--token", "iss=testing@secure.istio.io,sub=alice,aud=httpbin"},
		"unauthenticated": {"--to", "Pod/explain-live/httpbin-0", "--path", "/headers", "--from-namespace", "shop", "--token", "iss=testing@secure.istio.io,sub=alice,aud=other"},
		"allow ":          {"--to", "Pod/explain-live/httpbin-0", "--path", "/healthz", "--from-namespace", "shop"},
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

// TestCheckLive: `meshguard check --cluster` finds on the live objects what `check -f`
// finds on a dump of the cluster; its previews of an apply and of a delete say what admission
// then says.
func TestCheckLive(t *testing.T) {
	const objects = `apiVersion: v1
kind: Namespace
metadata: {name: check-live}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: check-live, labels: {app: web}}
spec: {containers: [{name: web, image: registry.example/web:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: admin-0, namespace: check-live, labels: {app: admin}}
spec: {containers: [{name: admin, image: registry.example/admin:1}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: check-live}
spec:
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: check-live}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
`
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Warnings only: kubectl applies them.
	if _, stderr, err := kubectl(t, objects, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	dump := dumpCluster(t)
	findings := func(args ...string) (code int, found []string) {
		t.Helper()
		out, err := exec.Command(local.Binary, append([]string{"check", "-o", "json"}, args...)...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		var report struct {
			Findings []struct{ Rule, Action, Kind, Namespace, ObjectName, Field string } `json:"findings"`
		}
		if jerr := json.Unmarshal(out, &report); jerr != nil {
			t.Fatalf("check %v: %v %v\n%s", args, err, jerr, out)
		}
		for _, f := range report.Findings {
			found = append(found, strings.Join([]string{f.Rule, f.Action, f.Kind, f.Namespace, f.ObjectName, f.Field}, " "))
		}
		slices.Sort(found)
		return code, found
	}
	live := []string{"--cluster", "--kubeconfig", local.Kubeconfig}
	_, fromCluster := findings(append(live, "-n", "check-live")...)
	_, fromFiles := findings("-f", dump)
	fromFiles = slices.DeleteFunc(fromFiles, func(f string) bool { return strings.Fields(f)[3] != "check-live" })
	if !slices.Equal(fromCluster, fromFiles) || len(fromFiles) == 0 {
		t.Errorf("from the cluster:\n%s\nfrom files:\n%s", strings.Join(fromCluster, "\n"), strings.Join(fromFiles, "\n"))
	}

	ap := objects[strings.Index(objects, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy"):]
	deleting := write("ap.yaml", ap)
	code, preview := findings(append(live, "-f", deleting, "--delete")...)
	_, stderr, err := kubectl(t, "", "delete", "-f", deleting, "--dry-run=server")
	if code != 1 || !slices.ContainsFunc(preview, func(f string) bool { return strings.HasPrefix(f, "MG303 deny") }) || err == nil || !strings.Contains(stderr, "MG303") {
		t.Errorf("deleting the enforcing policy: preview exit %d %v; kubectl %v %s", code, preview, err, stderr)
	}
	weaker := write("weaker.yaml", strings.Replace(ap, `rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]`, `rules: [{from: [{source: {requestPrincipals: ["*"]}}]}, {to: [{operation: {methods: ["GET"]}}]}]`, 1))
	code, preview = findings(append(live, "-f", weaker)...)
	_, stderr, err = kubectl(t, "", "apply", "-f", weaker, "--dry-run=server")
	if code != 1 || !slices.ContainsFunc(preview, func(f string) bool { return strings.HasPrefix(f, "MG303 deny") }) || err == nil || !strings.Contains(stderr, "MG303") {
		t.Errorf("weakening the enforcing policy: preview exit %d %v; kubectl %v %s", code, preview, err, stderr)
	}
}

// dumpCluster writes what kubectl reads of the kinds meshguard judges, every namespace, to
// a file `meshguard check -f` reads.
func dumpCluster(t *testing.T) string {
	t.Helper()
	out, stderr, err := kubectl(t, "", "get", "-A", "-o", "yaml",
		"namespaces,pods,services,requestauthentications.security.istio.io,authorizationpolicies.security.istio.io,peerauthentications.security.istio.io,meshguardrails.meshguard.io")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	file := filepath.Join(t.TempDir(), "dump.yaml")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestOldestPeerAuthenticationWins: of two PeerAuthentications selecting one workload
// Istio applies the older, whatever their names; the API server lists them by name.
// Admission, `check --cluster` and `explain --cluster` pick the same one: a PERMISSIVE
// policy named before an older STRICT one weakens nothing (no MG601), a policy on
// identities there gets no MG307 from either, and a plaintext caller is refused; where
// PERMISSIVE is the only mode, both find MG307.
func TestOldestPeerAuthenticationWins(t *testing.T) {
	pa := func(ns, name, selector, mode string) string {
		return fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: %s, namespace: %s}\nspec: {selector: {matchLabels: {%s}}, mtls: {mode: %s}}\n", name, ns, selector, mode)
	}
	web := func(ns string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: %s, labels: {app: web, tier: api}}
spec: {containers: [{name: web, image: registry.example/web:1}]}
`, ns)
	}
	identities := func(ns string) string {
		return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-from-frontend, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/%[1]s/sa/frontend"]}}]}]
`, ns)
	}
	apply := func(manifest string) string {
		t.Helper()
		_, stderr, err := kubectl(t, manifest, "apply", "-f", "-")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		return stderr // kubectl prints admission's warnings there
	}
	// The Pods first: a PeerAuthentication is judged for the workloads it selects, and
	// another test's mesh-wide STRICT policy may be in force for those to come.
	for _, ns := range []string{"pa-oldest", "pa-permissive"} {
		namespace(t, ns, "")
		apply(web(ns))
	}
	apply(pa("pa-oldest", "zz-strict", "app: web", "STRICT"))
	time.Sleep(1100 * time.Millisecond) // creation times are to the second
	if warnings := apply(pa("pa-oldest", "aa-permissive", "tier: api", "PERMISSIVE")); strings.Contains(warnings, "MG601") {
		t.Errorf("admission took the newer PeerAuthentication: %s", warnings)
	}
	apply(pa("pa-permissive", "web", "app: web", "PERMISSIVE"))
	admission := map[string]bool{}
	for _, ns := range []string{"pa-oldest", "pa-permissive"} {
		admission[ns] = strings.Contains(apply(identities(ns)), "MG307")
	}
	out, _ := exec.Command(local.Binary, "check", "--cluster", "--kubeconfig", local.Kubeconfig, "-o", "json").Output()
	var report struct {
		Findings []struct{ Rule, Namespace string }
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("check --cluster: %v\n%s", err, out)
	}
	cluster := map[string]bool{}
	for _, f := range report.Findings {
		if f.Rule == "MG307" {
			cluster[f.Namespace] = true
		}
	}
	for ns, want := range map[string]bool{"pa-oldest": false, "pa-permissive": true} {
		if admission[ns] != want || cluster[ns] != want {
			t.Errorf("%s: MG307 from admission %v, from check --cluster %v; want %v", ns, admission[ns], cluster[ns], want)
		}
	}
	out, err := exec.Command(local.Binary, "explain", "--cluster", "--kubeconfig", local.Kubeconfig, "--to", "Pod/pa-oldest/web-0", "--from-plaintext", "-o", "json").Output()
	var e struct{ Verdict, DecidedBy string }
	if jerr := json.Unmarshal(out, &e); err != nil || jerr != nil || e.Verdict != "deny" {
		t.Errorf("explain: a plaintext caller under the older policy (STRICT): %s by %q (%v %v)", e.Verdict, e.DecidedBy, err, jerr)
	}
}
