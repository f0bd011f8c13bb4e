package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// TestConcurrentWriters: eight writers create, weaken, restore and delete the two policies
// that each make web require a token, in four namespaces at once, through two replicas of
// meshguard behind one Service, while the first is restarted (taken out of the Service,
// stopped, started, put back) and then kube-apiserver is killed and started again.
// Afterwards no namespace is left open by a write meshguard allowed: each keeps one of them
// enforcing, and `meshguard check --cluster` finds no MG301. The writers see no error but
// meshguard's denials, their own races (not found, already exists, conflict) and, while it
// is down, the API server's absence.
func TestConcurrentWriters(t *testing.T) {
	const namespaces, writers = 4, 8
	strict := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`
	policies := map[string]string{
		"web-require-jwt": strict,
		"web-deny-anonymous": `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-deny-anonymous, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
`,
	}
	// Admits every request: opens web unless the DENY policy is there.
	open := strings.Replace(strict, `rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]`, `rules: [{}]`, 1)
	for n := range namespaces {
		ns := fmt.Sprintf("writers-%d", n)
		protectedWeb(t, ns)
		pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: NS, labels: {app: web}}\nspec: {containers: [{name: web, image: registry.example/web:1}]}\n"
		if _, stderr, err := kubectl(t, strings.ReplaceAll(policies["web-deny-anonymous"]+"---\n"+pod, "NS", ns), "apply", "-f", "-"); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
	}
	client, err := dynamic.NewForConfig(local.Config)
	if err != nil {
		t.Fatal(err)
	}
	aps := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	object := func(manifest, ns string) *unstructured.Unstructured {
		var o unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(strings.ReplaceAll(manifest, "NS", ns)), &o.Object); err != nil {
			t.Fatal(err)
		}
		return &o
	}
	// Each operation, on a policy of a namespace.
	type operation func(ctx context.Context, ns, name string) error
	update := func(manifest string) operation {
		return func(ctx context.Context, ns, name string) error {
			current, err := client.Resource(aps).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			o := object(manifest, ns)
			o.SetResourceVersion(current.GetResourceVersion())
			_, err = client.Resource(aps).Namespace(ns).Update(ctx, o, metav1.UpdateOptions{})
			return err
		}
	}
	operations := map[string]operation{
		"delete": func(ctx context.Context, ns, name string) error {
			return client.Resource(aps).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		"create": func(ctx context.Context, ns, name string) error {
			_, err := client.Resource(aps).Namespace(ns).Create(ctx, object(policies[name], ns), metav1.CreateOptions{})
			return err
		},
		"weaken":  update(open),
		"restore": update(strict),
	}
	names := []string{"delete", "create", "weaken", "restore"}

	// Two replicas behind one Service.
	second, err := local.StartReplica(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	service, err := local.NewBalancer(local.Primary(), second)
	if err != nil {
		t.Fatal(err)
	}
	defer service.Close()
	if err := local.PointWebhooks(context.Background(), service.URL); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := local.PointWebhooks(context.Background(), local.WebhookURL); err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(2 * time.Second) // the API server picks the configurations up through its informer

	// What is down now, for the errors it excuses.
	var apiserverDown atomic.Bool
	var mu sync.Mutex
	counts := map[string]int{}
	var unexpected []string
	classify := func(err error, down bool) string {
		switch {
		case err == nil:
			return "allowed"
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "meshguard"):
			return "denied by meshguard"
		case apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
			return "lost a race with another writer"
		case down && !strings.Contains(err.Error(), "failed calling webhook"):
			return "the API server away"
		}
		return ""
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 28))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ns := fmt.Sprintf("writers-%d", r.IntN(namespaces))
				op := names[r.IntN(len(names))]
				name := "web-require-jwt"
				if (op == "delete" || op == "create") && r.IntN(2) == 0 {
					name = "web-deny-anonymous"
				}
				down := apiserverDown.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := operations[op](ctx, ns, name)
				cancel()
				down = down || apiserverDown.Load()
				class := classify(err, down)
				mu.Lock()
				if class == "" {
					unexpected = append(unexpected, fmt.Sprintf("%s %s/%s: %v", op, ns, name, err))
				} else {
					counts[op+": "+class]++
				}
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			}
		})
	}
	pause := func() { time.Sleep(4 * time.Second) }
	pause()
	// A rolling restart of the first replica: out of the Service, then stopped.
	service.Route(second)
	time.Sleep(time.Second)
	local.Primary().Stop()
	if err := local.RestartMeshguard(context.Background()); err != nil {
		t.Fatal(err)
	}
	service.Route(local.Primary(), second)
	pause()
	apiserverDown.Store(true)
	if err := local.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := local.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, local.Ready)
	time.Sleep(time.Second)
	apiserverDown.Store(false)
	pause()
	close(stop)
	wg.Wait()

	t.Logf("operations, by outcome: %v", counts)
	for _, u := range unexpected {
		t.Errorf("unexpected error: %s", u)
	}
	if counts["delete: allowed"] == 0 || counts["delete: denied by meshguard"] == 0 || counts["weaken: denied by meshguard"] == 0 {
		t.Errorf("the writers did not both pass and meet meshguard: %v", counts)
	}
	// The invariant: web requires a token in every namespace.
	for n := range namespaces {
		ns := fmt.Sprintf("writers-%d", n)
		deny, derr := client.Resource(aps).Namespace(ns).Get(context.Background(), "web-deny-anonymous", metav1.GetOptions{})
		require, rerr := client.Resource(aps).Namespace(ns).Get(context.Background(), "web-require-jwt", metav1.GetOptions{})
		strictNow := false
		if rerr == nil {
			rules, _, _ := unstructured.NestedSlice(require.Object, "spec", "rules")
			rule, _ := rules[0].(map[string]any)
			strictNow = rule["from"] != nil
		}
		if (derr != nil || deny == nil) && !strictNow {
			t.Errorf("%s is open: web-deny-anonymous %v, web-require-jwt %v", ns, derr, require)
		}
	}
	out, err := exec.Command(local.Binary, "check", "--cluster", "--kubeconfig", local.Kubeconfig, "-o", "json").Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	var report struct {
		Findings []struct{ Rule, Namespace, ObjectName string } `json:"findings"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range report.Findings {
		if strings.HasPrefix(f.Namespace, "writers-") && f.Rule == "MG301" {
			t.Errorf("meshguard check --cluster: %s on %s/%s", f.Rule, f.Namespace, f.ObjectName)
		}
	}
}
