package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshguard/meshguard/audit"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/webhook"
)

// Benchmark scale: the 10,000 Pods and 2,000 policies, over 500 namespaces.
const (
	benchNamespaces = 500
	podsPerNS       = 20
	policiesPerNS   = 2 // one RequestAuthentication and one AuthorizationPolicy
)

var populate sync.Once

// populateCluster creates the benchmark's objects through the API server, meshguard's
// webhooks included, with a few writers at once.
func populateCluster(b *testing.B, c client.Client) {
	ctx := context.Background()
	work := make(chan client.Object)
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := c.Create(ctx, o); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for n := range benchNamespaces {
		ns := fmt.Sprintf("bench-%d", n)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		for i := range podsPerNS {
			work <- &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i), Namespace: ns, Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%5)}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			}
		}
		ra := &policy.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "jwt", Namespace: ns}}
		ra.Spec.Selector = selector("app-0")
		ra.Spec.JwtRules = []*jwtRule{{Issuer: "https://idp.example.com", JwksUri: "https://idp.example.com/keys", Audiences: []string{ns}}}
		ap := &policy.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "require-jwt", Namespace: ns}}
		ap.Spec.Selector = selector("app-0")
		ap.Spec.Rules = requirePrincipal("https://idp.example.com/*")
		work <- ra
		work <- ap
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAdmission measures one validating review (a RequestAuthentication CREATE) and one
// mutating review (a Pod CREATE needing a patch) against an informer cache holding 10,000
// Pods (as metadata) and 2,000 policies, fed by the real API server; and an incremental
// audit pass over one namespace, its Reports read and written through it. Run it with
// `go test ./test/e2e -run '^$' -bench Admission` (figures in docs/performance.md).
func BenchmarkAdmission(b *testing.B) {
	scheme, err := kinds.NewScheme()
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(local.Config, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	populate.Do(func() { populateCluster(b, c) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := webhook.CacheOptions()
	opts.Scheme = scheme
	informers, err := cache.New(local.Config, opts)
	if err != nil {
		b.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(local.Config)
	if err != nil {
		b.Fatal(err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(local.Config, httpClient)
	if err != nil {
		b.Fatal(err)
	}
	installed, err := kinds.Installed(mapper)
	if err != nil {
		b.Fatal(err)
	}
	views := webhook.NewViews(informers)
	if err := views.Watch(ctx, informers, installed); err != nil {
		b.Fatal(err)
	}
	for _, o := range webhook.CachedObjects(installed) {
		if _, err := informers.GetInformer(ctx, o, cache.BlockUntilSynced(false)); err != nil {
			b.Fatal(err)
		}
	}
	before := heapInUse()
	go func() { _ = informers.Start(ctx) }()
	if !informers.WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}
	// An upper bound: the policies and namespaces share the cache with the Pods.
	cachedPerPod := float64(heapInUse()-before) / float64(benchNamespaces*podsPerNS)
	var synced atomic.Bool
	synced.Store(true)
	srv := &webhook.Server{Engine: policy.NewEngine(), Reader: informers, Views: views, Synced: &synced, Log: logr.Discard()}

	guardrail := []byte(`{"apiVersion":"meshguard.io/v1alpha1","kind":"MeshGuardrail","metadata":{"name":"bench-coverage"},
		"spec":{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"bench-7"}},"coverage":{"required":true,"podLabels":{"enablesecurity":"{namespace}"}}}}`)
	var g policy.MeshGuardrail
	if err := json.Unmarshal(guardrail, &g); err != nil {
		b.Fatal(err)
	}
	if err := c.Create(ctx, &g); err != nil {
		b.Fatal(err)
	}
	defer c.Delete(context.Background(), &g)

	cases := []struct {
		name    string
		handler admission.Handler
		kind    metav1.GroupVersionKind
		object  string
		allowed bool
		patch   bool
	}{{
		name: "validate-RequestAuthentication-create", handler: srv.Validating(),
		kind:    metav1.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "RequestAuthentication"},
		object:  `{"apiVersion":"security.istio.io/v1","kind":"RequestAuthentication","metadata":{"name":"extra","namespace":"bench-7"},"spec":{"selector":{"matchLabels":{"enablesecurity":"bench-7"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["bench-7"]}]}}`,
		allowed: true,
	}, {
		name: "mutate-Pod-create", handler: srv.Mutating(),
		kind:    metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		object:  `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"new","namespace":"bench-7","labels":{"app":"app-0"}},"spec":{"containers":[{"name":"app","image":"registry.example/app:1"}]}}`,
		allowed: true, patch: true,
	}}
	// The guardrail reaches the cache through its watch.
	for {
		var l policy.MeshGuardrail
		if informers.Get(ctx, client.ObjectKey{Name: "bench-coverage"}, &l) == nil {
			break
		}
	}
	for _, tc := range cases {
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "bench", Kind: tc.kind, Namespace: "bench-7", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(tc.object)},
		}}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := tc.handler.Handle(ctx, req)
				if r.Allowed != tc.allowed || (len(r.Patches) > 0) != tc.patch {
					b.Fatalf("allowed=%v patches=%d: %+v", r.Allowed, len(r.Patches), r.Result)
				}
			}
			b.ReportMetric(cachedPerPod, "heap-B/cached-pod")
		})
	}

	// An incremental audit pass, as the leader runs one after a change in bench-7: the state
	// read from the same cache, the namespace judged, its Reports listed through the API
	// server, and written where they differ. The guardrail leaves bench-7's Pods uncovered
	// (MG506): the first pass writes their Reports, and the next ones find them unchanged.
	engine := policy.NewEngine()
	var known audit.Written
	pass := func(b *testing.B) int {
		st, failed := srv.State(ctx)
		desired := audit.Desired(engine, st, []string{"bench-7"})
		writes, err := audit.Sync(ctx, c, audit.OpenReports, desired, []string{"bench-7"}, &known)
		if err == nil {
			err = failed()
		}
		if err != nil || len(desired) == 0 {
			b.Fatalf("%d reports, %v", len(desired), err)
		}
		return writes
	}
	b.Run("audit-incremental-pass-unchanged", func(b *testing.B) {
		pass(b)
		b.ReportAllocs()
		for b.Loop() {
			if w := pass(b); w != 0 {
				b.Fatalf("a pass with nothing changed wrote %d times", w)
			}
		}
	})
	b.Run("audit-incremental-pass-one-report-rewritten", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			var reports reportsv1alpha1.ReportList
			if err := c.List(ctx, &reports, client.InNamespace("bench-7")); err != nil || len(reports.Items) == 0 {
				b.Fatalf("%d reports, %v", len(reports.Items), err)
			}
			if err := c.Delete(ctx, &reports.Items[0]); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			// The report lost, at least; the leader of the cluster's own meshguard, auditing
			// beside this benchmark, may have touched others.
			if w := pass(b); w < 1 {
				b.Fatalf("a pass after a report was lost wrote %d times", w)
			}
		}
	})
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}
