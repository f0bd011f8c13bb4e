package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func seed(t *testing.T, name, variant string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "seeds", name, variant+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func namespace(t *testing.T, name string, labels string) {
	t.Helper()
	if _, stderr, err := kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n  labels: {"+labels+"}\n", "apply", "-f", "-"); err != nil {
		t.Fatalf("namespace %s: %v\n%s", name, err, stderr)
	}
}

// TestSeedsThroughKubectl applies the seed articles' configurations with kubectl: as
// written they are denied with the rule that catches them; fixed, they are admitted.
func TestSeedsThroughKubectl(t *testing.T) {
	for _, ns := range []string{"aks-istio-ingress", "istio-system", "foo", "orthweb", "shop", "api"} {
		namespace(t, ns, "")
	}
	for name, rule := range map[string]string{
		"01-aks-ingress-entra":  "MG101 ra-missing-audiences",
		"02-entra-common-keys":  "MG101 ra-missing-audiences",
		"03-inline-jwk":         "MG101 ra-missing-audiences",
		"05-authn-authz-basics": "MG101 ra-missing-audiences",
	} {
		t.Run(name, func(t *testing.T) {
			_, stderr, err := kubectl(t, seed(t, name, "unsafe"), "apply", "-f", "-")
			if err == nil || !strings.Contains(stderr, "admission webhook \"security.meshguard.io\" denied the request") || !strings.Contains(stderr, rule) {
				t.Errorf("unsafe apply: err=%v\n%s", err, stderr)
			}
			if _, stderr, err := kubectl(t, seed(t, name, "fixed"), "apply", "-f", "-"); err != nil {
				t.Errorf("fixed apply: %v\n%s", err, stderr)
			}
		})
	}
}

// TestDryRunWritesNothing: a server-side dry run gets the verdict of a real apply, and
// nothing is stored.
func TestDryRunWritesNothing(t *testing.T) {
	namespace(t, "dry", "")
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: no-aud, namespace: dry}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys}]\n"
	for _, mode := range [][]string{{"apply", "--dry-run=server"}, {"apply", "--server-side", "--dry-run=server"}} {
		_, stderr, err := kubectl(t, ra, append(mode, "-f", "-")...)
		if err == nil || !strings.Contains(stderr, "MG101") || !strings.Contains(stderr, "dry run") {
			t.Errorf("%v: err=%v\n%s", mode, err, stderr)
		}
	}
	good := strings.Replace(ra, "jwksUri: https://idp.example.com/keys}", "jwksUri: https://idp.example.com/keys, audiences: [web]}", 1)
	_, stderr, err := kubectl(t, good, "apply", "--dry-run=server", "-f", "-")
	if err != nil || !strings.Contains(stderr, "Warning: MG301 ra-without-enforcement") {
		t.Errorf("warnings on dry run: err=%v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, "", "get", "requestauthentication", "-n", "dry", "no-aud"); err == nil || !strings.Contains(stderr, "NotFound") {
		t.Errorf("dry run wrote the object: %v %s", err, stderr)
	}
}

// TestRegressingDelete: deleting the only policy that requires a token is MG303.
func TestRegressingDelete(t *testing.T) {
	protectedWeb(t, "regress")
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, "", "delete", "authorizationpolicy", "-n", "regress", "web-require-jwt", "--dry-run=server")
		return err != nil && strings.Contains(stderr, "MG303 removes-jwt-enforcement")
	})
	if _, stderr, err := kubectl(t, "", "get", "authorizationpolicy", "-n", "regress", "web-require-jwt"); err != nil {
		t.Errorf("the policy is gone: %s", stderr)
	}
	// Removing the RequestAuthentication first locks callers out rather than letting them in,
	// so it is no MG303; after it, the policy protects nothing and may go too.
	for _, kind := range []string{"requestauthentication/web-jwt", "authorizationpolicy/web-require-jwt"} {
		if _, stderr, err := kubectl(t, "", "delete", "-n", "regress", kind); err != nil {
			t.Errorf("delete %s: %v\n%s", kind, err, stderr)
		}
	}
}

// TestRegressingChanges: the changes that open a workload protected now are MG303 through
// kubectl, as Envoy would evaluate the policies after them: a second ALLOW policy, a rule
// admitting token-less requests on every path, a DENY narrowed to one path, a dry run
// switched on with a value strconv.ParseBool reads as true. An exemption of named paths is
// admitted.
func TestRegressingChanges(t *testing.T) {
	namespace(t, "opening", "")
	const ra = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: opening}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
`
	const requireJWT = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: opening%s}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - {from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}
%s`
	const denyAnonymous = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-deny-anonymous, namespace: opening}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
%s`
	apiRA := strings.ReplaceAll(ra, "web", "api")
	if _, stderr, err := kubectl(t, ra+"---\n"+fmt.Sprintf(requireJWT, "", "")+"---\n"+apiRA+"---\n"+fmt.Sprintf(denyAnonymous, ""), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	opening := map[string]string{
		"a second ALLOW policy": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: web-read, namespace: opening}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
		"a catch-all rule":      fmt.Sprintf(requireJWT, "", "  - {to: [{operation: {paths: [\"/*\"]}}]}\n"),
		"dry run on":            fmt.Sprintf(requireJWT, ", annotations: {istio.io/dry-run: \"True\"}", ""),
		"a DENY narrowed":       fmt.Sprintf(denyAnonymous, "    to: [{operation: {paths: [/admin]}}]\n"),
	}
	for name, change := range opening {
		var last string
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("last answer:\n%s", last)
				}
			})
			waitFor(t, func() bool {
				_, stderr, err := kubectl(t, change, "apply", "--dry-run=server", "-f", "-")
				last = stderr
				return err != nil && strings.Contains(stderr, "MG303 removes-jwt-enforcement")
			})
		})
	}
	exemption := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: web-health, namespace: opening}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules: [{to: [{operation: {paths: [/healthz]}}]}]\n"
	if _, stderr, err := kubectl(t, exemption, "apply", "-f", "-"); err != nil {
		t.Errorf("an exemption of a named path: %v\n%s", err, stderr)
	}
}

// TestAmbientNamespace: the "require a token" pattern in an ambient namespace is denied
// through kubectl: no proxy loads the RequestAuthentication (MG801) and ztunnel skips the
// DENY (MG802, istio#61126). Attached to the Service's waypoint, the same policies are
// admitted.
func TestAmbientNamespace(t *testing.T) {
	namespace(t, "ambient-shop", "istio.io/dataplane-mode: ambient")
	const selector, waypoint = "selector: {matchLabels: {app: web}}", `targetRefs: [{kind: Service, group: "", name: web}]`
	bundle := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: ambient-shop}
spec:
  ATTACH
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-no-token, namespace: ambient-shop}
spec:
  ATTACH
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
`
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, strings.ReplaceAll(bundle, "ATTACH", selector), "apply", "--dry-run=server", "-f", "-")
		return err != nil && strings.Contains(stderr, "MG801 ambient-ra-not-enforced") && strings.Contains(stderr, "MG802 ambient-ztunnel-deny-noop")
	})
	// The waypoint form: the namespace bound to a waypoint, the policies attached to the
	// Service, and ztunnel admitting only the waypoint (MG808).
	namespace(t, "ambient-shop", "istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint")
	waypointForm := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: ambient-shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ambient-shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only-from-waypoint, namespace: ambient-shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/ambient-shop/sa/waypoint"]}}]}]
`
	if _, stderr, err := kubectl(t, waypointForm, "apply", "-f", "-"); err != nil {
		t.Fatalf("the waypoint: %v\n%s", err, stderr)
	}
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, strings.ReplaceAll(bundle, "ATTACH", waypoint), "apply", "-f", "-")
		if err != nil || strings.Contains(stderr, "Warning: MG8") {
			t.Logf("the waypoint form: %v\n%s", err, stderr)
			return false
		}
		return true
	})
	// Deleting the waypoint's DENY opens the Service's workloads again: MG303.
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, "", "delete", "authorizationpolicy", "-n", "ambient-shop", "deny-no-token", "--dry-run=server")
		return err != nil && strings.Contains(stderr, "MG303 removes-jwt-enforcement")
	})
	// Unbinding the namespace leaves the Service's JWT policies enforced nowhere: MG812.
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, "", "label", "namespace", "ambient-shop", "istio.io/use-waypoint-", "--dry-run=server")
		return err != nil && strings.Contains(stderr, "MG812 waypoint-binding-removed")
	})
	if _, stderr, err := kubectl(t, "", "label", "namespace", "ambient-shop", "team=web"); err != nil {
		t.Errorf("a label that binds nothing: %v\n%s", err, stderr)
	}
}

// TestGatewayTargetRefs: meshguard watches Gateway API Gateways: a JWT policy attached to a
// Gateway that does not exist is MG807 until the Gateway is applied.
func TestGatewayTargetRefs(t *testing.T) {
	namespace(t, "gw", "")
	ra := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: waypoint-jwt, namespace: gw}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
`
	if _, stderr, err := kubectl(t, ra, "apply", "--dry-run=server", "-f", "-"); err == nil || !strings.Contains(stderr, "MG807 targetref-attaches-nowhere") {
		t.Errorf("no Gateway yet: err=%v\n%s", err, stderr)
	}
	gateway := "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: gw}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n"
	if _, stderr, err := kubectl(t, gateway, "apply", "-f", "-"); err != nil {
		t.Fatalf("the Gateway: %v\n%s", err, stderr)
	}
	waitFor(t, func() bool {
		_, _, err := kubectl(t, ra, "apply", "-f", "-")
		return err == nil
	})
}

// TestPodChangesReachPolicyReviews: a review of a policy sees the Pods it selects as the
// cache has them now, through their status changes (which keep the namespace's views) and
// label changes (which drop them).
func TestPodChangesReachPolicyReviews(t *testing.T) {
	namespace(t, "churn", "")
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: api-0, namespace: churn, labels: {app: api}}\nspec: {containers: [{name: api, image: registry.example/api:1}]}\n"
	if _, stderr, err := kubectl(t, pod, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: api-jwt, namespace: churn}\nspec:\n  selector: {matchLabels: {app: api}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [api]}]\n"
	warned := func(about string) func() bool {
		return func() bool {
			_, stderr, err := kubectl(t, ra, "apply", "--dry-run=server", "-f", "-")
			return err == nil && strings.Contains(stderr, "MG301") && strings.Contains(stderr, about)
		}
	}
	waitFor(t, warned("Pod churn/api-0"))
	status := `{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Starting"}]}}`
	if _, stderr, err := kubectl(t, "", "patch", "pod", "-n", "churn", "api-0", "--subresource=status", "--type=merge", "-p", status); err != nil {
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	if !warned("Pod churn/api-0")() {
		t.Error("after the Pod's status change, the policy's review no longer sees it")
	}
	if _, stderr, err := kubectl(t, "", "label", "pod", "-n", "churn", "api-0", "app=web", "--overwrite"); err != nil {
		t.Fatalf("label: %v\n%s", err, stderr)
	}
	waitFor(t, warned("workloads labelled app=api"))
}

// TestCoverage: new Pods in a covered namespace get the coverage label; removing it is MG502;
// a bad guardrail is rejected.
func TestCoverage(t *testing.T) {
	// The CRD schema rejects an unknown action; the webhook, a rule ID that does not exist.
	_, stderr, err := kubectl(t, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: broken}\nspec: {rules: {MG101: block}}\n", "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, `Unsupported value: "block"`) {
		t.Errorf("unknown action: err=%v\n%s", err, stderr)
	}
	_, stderr, err = kubectl(t, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: broken}\nspec: {rules: {MG999: deny}}\n", "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, `"guardrails.meshguard.io" denied the request`) || !strings.Contains(stderr, "spec.rules[MG999]") {
		t.Errorf("unknown rule ID: err=%v\n%s", err, stderr)
	}
	guardrail := "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: covered}\nspec:\n  namespaceSelector: {matchLabels: {jwt: required}}\n  coverage: {required: true, podLabels: {enablesecurity: \"{namespace}\"}}\n"
	if _, stderr, err := kubectl(t, guardrail, "apply", "-f", "-"); err != nil {
		t.Fatalf("guardrail: %v\n%s", err, stderr)
	}
	namespace(t, "covered", "jwt: required")
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web-%d, namespace: covered, labels: {app: web}}\nspec: {containers: [{name: web, image: registry.example/web:1}]}\n"
	// The guardrail reaches meshguard through its watch: poll until new Pods are labelled.
	var name string
	waitFor(t, func() bool {
		name = "web-" + time.Now().Format("150405.000")
		name = strings.ReplaceAll(name, ".", "-")
		manifest := strings.Replace(pod, "web-%d", name, 1)
		if _, stderr, err := kubectl(t, manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("pod: %v\n%s", err, stderr)
		}
		p, err := local.Kube.CoreV1().Pods("covered").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && p.Labels["enablesecurity"] == "covered" && p.Annotations["meshguard.io/covered-by"] == "covered"
	})
	_, stderr, err = kubectl(t, "", "label", "pod", "-n", "covered", name, "enablesecurity-")
	if err == nil || !strings.Contains(stderr, "MG502 pod-coverage-label-removed") {
		t.Errorf("label removal: err=%v\n%s", err, stderr)
	}
	// A status write changes labels too (the API server resets only a Pod's spec there).
	_, stderr, err = kubectl(t, "", "patch", "pod", "-n", "covered", name, "--subresource=status", "--type=merge", "-p", `{"metadata":{"labels":{"enablesecurity":null}}}`)
	if err == nil || !strings.Contains(stderr, "MG502 pod-coverage-label-removed") {
		t.Errorf("label removal through pods/status: err=%v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, "", "label", "pod", "-n", "covered", name, "version=v2"); err != nil {
		t.Errorf("an unrelated label change was refused: %s", stderr)
	}
}

// TestGuardrailHotReload: a guardrail applied while meshguard runs takes effect without a
// restart.
func TestGuardrailHotReload(t *testing.T) {
	namespace(t, "strict", "tier: strict")
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: alone, namespace: strict}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]\n"
	if _, stderr, err := kubectl(t, ra, "apply", "--dry-run=server", "-f", "-"); err != nil {
		t.Fatalf("before the guardrail: %v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: strict}\nspec:\n  namespaceSelector: {matchLabels: {tier: strict}}\n  rules: {MG301: deny}\n", "apply", "-f", "-"); err != nil {
		t.Fatalf("guardrail: %v\n%s", err, stderr)
	}
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, ra, "apply", "--dry-run=server", "-f", "-")
		return err != nil && strings.Contains(stderr, "MG301 ra-without-enforcement")
	})
}

// waitFor polls until cond holds: watches reach meshguard's cache asynchronously.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestProfiles: with --pprof-bind-address, meshguard serves Go's profiles there, for
// diagnosing performance in place.
func TestProfiles(t *testing.T) {
	resp, err := http.Get("http://" + pprofAddress + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("serve")) {
		t.Errorf("HTTP %d: %q", resp.StatusCode, body)
	}
}
