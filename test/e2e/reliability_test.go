package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestMeshguardDown: with meshguard killed and its webhooks still registered, Pods are
// created (the Pod webhooks fail open) and the security kinds are refused (they fail
// closed); once meshguard is back, both are judged again.
func TestMeshguardDown(t *testing.T) {
	namespace(t, "outage", "")
	const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, namespace: outage, labels: {app: web}}\nspec: {containers: [{name: web, image: registry.example/web:1}]}\n"
	// An RA with no audiences: MG101 denies it when meshguard judges.
	const ra = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: outage}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys}]\n"
	if err := local.KillMeshguard(); err != nil {
		t.Fatal(err)
	}
	running := false
	defer func() {
		if !running {
			if err := local.RestartMeshguard(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}()
	if _, stderr, err := kubectl(t, strings.Replace(pod, "NAME", "while-down", 1), "apply", "-f", "-"); err != nil {
		t.Errorf("a Pod while meshguard is down: %v\n%s", err, stderr)
	}
	_, stderr, err := kubectl(t, ra, "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, `failed calling webhook "security.meshguard.io"`) {
		t.Errorf("a RequestAuthentication while meshguard is down: err=%v\n%s", err, stderr)
	}
	if err := local.RestartMeshguard(context.Background()); err != nil {
		t.Fatal(err)
	}
	running = true
	_, stderr, err = kubectl(t, ra, "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, "MG101 ra-missing-audiences") {
		t.Errorf("a RequestAuthentication once meshguard is back: err=%v\n%s", err, stderr)
	}
	if _, stderr, err := kubectl(t, strings.Replace(pod, "NAME", "after-restart", 1), "apply", "-f", "-"); err != nil {
		t.Errorf("a Pod once meshguard is back: %v\n%s", err, stderr)
	}
}

// TestConcurrentDeletes: the two policies that each make a workload require a token,
// deleted at once through kubectl: at most one DELETE passes, and the workload keeps one.
func TestConcurrentDeletes(t *testing.T) {
	namespace(t, "race", "")
	bundle := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: race}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: race}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-deny-anonymous, namespace: race}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
`
	if _, stderr, err := kubectl(t, bundle, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	policies := []string{"authorizationpolicy/web-require-jwt", "authorizationpolicy/web-deny-anonymous"}
	// Each DELETE alone is allowed once meshguard's cache holds both policies.
	waitFor(t, func() bool {
		for _, p := range policies {
			if _, _, err := kubectl(t, "", "delete", "-n", "race", p, "--dry-run=server"); err != nil {
				return false
			}
		}
		return true
	})
	errs := make(chan error, len(policies))
	for _, p := range policies {
		go func() {
			_, _, err := kubectl(t, "", "delete", "-n", "race", p)
			errs <- err
		}()
	}
	deleted := 0
	for range policies {
		if <-errs == nil {
			deleted++
		}
	}
	if deleted != 1 {
		t.Errorf("%d of the two DELETEs passed", deleted)
	}
	if out, _, _ := kubectl(t, "", "get", "authorizationpolicies", "-n", "race", "-o", "name"); strings.Count(out, "authorizationpolicy") != 1 {
		t.Errorf("policies left: %q", out)
	}
}

// TestAPIServerRestart: kube-apiserver restarts while a change that would open a workload
// is tried over and over. meshguard's watches break; it reports not ready once they have
// failed for StaleAfter (security writes refused meanwhile), and is ready again once they
// deliver; the change is never allowed.
func TestAPIServerRestart(t *testing.T) {
	namespace(t, "restart", "")
	bundle := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: restart}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: restart}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`
	if _, stderr, err := kubectl(t, bundle, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	client, err := dynamic.NewForConfig(local.Config)
	if err != nil {
		t.Fatal(err)
	}
	aps := client.Resource(schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}).Namespace("restart")
	deleteAP := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return aps.Delete(ctx, "web-require-jwt", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	}
	waitFor(t, func() bool { err := deleteAP(); return err != nil && strings.Contains(err.Error(), "MG303") })

	var tries, wrongAllows atomic.Int32
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tries.Add(1)
			if deleteAP() == nil {
				wrongAllows.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := local.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			_ = local.StartAPIServer(context.Background())
		}
	}()
	deadline := time.Now().Add(45 * time.Second)
	for local.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("meshguard stayed ready with the API server gone")
		}
		time.Sleep(250 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := local.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	started = true
	for !local.Ready() {
		if ctx.Err() != nil {
			t.Fatal("meshguard not ready again after kube-apiserver came back")
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Load on the restarted API server too, then stop it.
	time.Sleep(2 * time.Second)
	close(stop)
	<-loadDone
	if n := wrongAllows.Load(); n > 0 {
		t.Errorf("%d of %d DELETEs allowed", n, tries.Load())
	}
	if err := deleteAP(); err == nil || !strings.Contains(err.Error(), "MG303") {
		t.Errorf("after the restart: %v", err)
	}
}
