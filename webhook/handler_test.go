package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

const iss = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"

var (
	raGood = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "` + iss + `", jwksUri: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys", audiences: ["api://web"]}]`
	raNoAudiences = `apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "` + iss + `", jwksUri: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys"}]`
	apRequire = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["` + iss + `/*"]}}]}]`
	// apDenyAnonymous and apRequire each make web require a token.
	apDenyAnonymous = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-deny-anonymous, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]`
	coverage = `apiVersion: meshguard.io/v1alpha1
kind: MeshGuardrail
metadata: {name: jwt-coverage}
spec:
  namespaceSelector: {matchLabels: {jwt: required}}
  coverage: {required: true, podLabels: {enablesecurity: "{namespace}"}}`
	shop = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {jwt: required, kubernetes.io/metadata.name: shop}}`
)

func scheme(t testing.TB) *runtime.Scheme {
	s, err := kinds.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// object reads a YAML manifest into a typed object of the test scheme.
func object(t testing.TB, s *runtime.Scheme, manifest string) client.Object {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		t.Fatal(err)
	}
	gvk := tm.GroupVersionKind()
	gvk.Version = s.PrioritizedVersionsForGroup(gvk.Group)[0].Version
	o, err := s.New(gvk)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, o); err != nil {
		t.Fatal(err)
	}
	return o.(client.Object)
}

func newServer(t testing.TB, synced bool, live ...string) *Server {
	s := scheme(t)
	var objs []client.Object
	for _, m := range live {
		objs = append(objs, object(t, s, m))
	}
	var ok atomic.Bool
	ok.Store(synced)
	return &Server{Engine: policy.NewEngine(), Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build(), Synced: &ok, Log: logr.Discard()}
}

// reviewAs is review, of a request by user.
func reviewAs(t *testing.T, h admission.Handler, user string, op admissionv1.Operation, obj, old string, dry bool) *admissionv1.AdmissionResponse {
	t.Helper()
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(reviewBody(t, op, obj, old, dry), &ar); err != nil {
		t.Fatal(err)
	}
	ar.Request.UserInfo.Username = user
	body, _ := json.Marshal(ar)
	return post(t, h, body)
}

// review posts an AdmissionReview to a handler over HTTP, as the API server does.
func review(t *testing.T, h admission.Handler, op admissionv1.Operation, obj, old string, dry bool) *admissionv1.AdmissionResponse {
	t.Helper()
	return post(t, h, reviewBody(t, op, obj, old, dry))
}

// reviewBody encodes an AdmissionReview of YAML manifests; "" leaves an object out.
func reviewBody(t testing.TB, op admissionv1.Operation, obj, old string, dry bool) []byte {
	t.Helper()
	req := admissionv1.AdmissionRequest{UID: types.UID("uid-1"), Operation: op, DryRun: &dry}
	raw := func(m string) runtime.RawExtension {
		if m == "" {
			return runtime.RawExtension{}
		}
		js, err := yaml.YAMLToJSON([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		// The kind, namespace and name of the request, as the API server sets them.
		var o metav1.PartialObjectMetadata
		_ = json.Unmarshal(js, &o)
		gvk := o.GroupVersionKind()
		req.Kind = metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
		req.Namespace, req.Name = o.Namespace, o.Name
		return runtime.RawExtension{Raw: js}
	}
	req.Object, req.OldObject = raw(obj), raw(old)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(t *testing.T, h admission.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	reviews{handler: h}.ServeHTTP(rec, r)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview (HTTP %d): %s", rec.Code, rec.Body.String())
	}
	if out.Response == nil {
		t.Fatalf("no response: %s", rec.Body.String())
	}
	return out.Response
}

func TestValidate(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire)
	v := srv.Validating()

	t.Run("deny with rule, field and fix", func(t *testing.T) {
		r := review(t, v, admissionv1.Create, raNoAudiences, "", false)
		if r.Allowed || r.Result.Code != http.StatusForbidden || r.Result.Reason != metav1.StatusReasonForbidden {
			t.Fatalf("allowed=%v result=%+v", r.Allowed, r.Result)
		}
		for _, want := range []string{"MG101 ra-missing-audiences", "spec.jwtRules[0].audiences", "Fix:"} {
			if !strings.Contains(r.Result.Message, want) {
				t.Errorf("message lacks %q: %s", want, r.Result.Message)
			}
		}
		if !strings.Contains(r.AuditAnnotations["findings"], "MG101=deny") {
			t.Errorf("audit annotations %v", r.AuditAnnotations)
		}
	})
	t.Run("dry run is judged the same", func(t *testing.T) {
		r := review(t, v, admissionv1.Create, raNoAudiences, "", true)
		if r.Allowed || !strings.Contains(r.Result.Message, "dry run") {
			t.Errorf("dry run: allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
	t.Run("warnings under 120 characters", func(t *testing.T) {
		r := review(t, newServer(t, true).Validating(), admissionv1.Create, raGood, "", false)
		if !r.Allowed || len(r.Warnings) == 0 || !strings.HasPrefix(r.Warnings[0], "MG301 ra-without-enforcement") {
			t.Fatalf("allowed=%v warnings=%v", r.Allowed, r.Warnings)
		}
		for _, w := range r.Warnings {
			if len(w) > maxWarningLength {
				t.Errorf("warning of %d characters: %s", len(w), w)
			}
		}
	})
	t.Run("DELETE of the only enforcing policy", func(t *testing.T) {
		r := review(t, v, admissionv1.Delete, "", apRequire, false)
		if r.Allowed || !strings.Contains(r.Result.Message, "MG303 removes-jwt-enforcement") {
			t.Errorf("allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
	byCleanup := func(t *testing.T, h admission.Handler, user string) *admissionv1.AdmissionResponse {
		return reviewAs(t, h, user, admissionv1.Delete, "", apRequire, false)
	}
	t.Run("DELETE by the namespace controller: the namespace is going", func(t *testing.T) {
		going := "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [example.com/hold]}"
		h := newServer(t, true, raGood, apRequire, going).Validating()
		if r := byCleanup(t, h, "system:serviceaccount:kube-system:namespace-controller"); !r.Allowed {
			t.Errorf("denied: %s", r.Result.Message)
		}
	})
	// A tenant steers the garbage collector with an ownerReference (the tenant audit's F4).
	t.Run("DELETE by the garbage collector in a namespace that stays", func(t *testing.T) {
		if r := byCleanup(t, v, "system:serviceaccount:kube-system:generic-garbage-collector"); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
			t.Errorf("allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
	t.Run("DELETE of an unsafe policy is fine", func(t *testing.T) {
		r := review(t, newServer(t, true, raNoAudiences).Validating(), admissionv1.Delete, "", raNoAudiences, false)
		if !r.Allowed {
			t.Errorf("denied: %s", r.Result.Message)
		}
	})
	t.Run("not synced: security kinds fail closed", func(t *testing.T) {
		r := review(t, newServer(t, false).Validating(), admissionv1.Create, raGood, "", false)
		if r.Allowed || !strings.Contains(r.Result.Message, "meshguard is starting") {
			t.Errorf("allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
	t.Run("not synced: Pods are not held up", func(t *testing.T) {
		pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: web, image: web}]}"
		r := review(t, newServer(t, false).Validating(), admissionv1.Create, pod, "", false)
		if !r.Allowed || !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "meshguard is starting") }) {
			t.Errorf("allowed=%v %s %v", r.Allowed, r.Result.Message, r.Warnings)
		}
	})
	t.Run("a coverage label value too long in a namespace there is", func(t *testing.T) {
		long := "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments-settlement-reconciliation-eu-west, labels: {jwt: required}}"
		rail := "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: g}\nspec:\n  namespaceSelector: {matchLabels: {jwt: required}}\n  coverage: {required: true, podLabels: {covered: 'covered-by-the-platform-{namespace}'}}"
		r := review(t, newServer(t, true, shop, long).Validating(), admissionv1.Create, rail, "", false)
		if r.Allowed || !strings.Contains(r.Result.Message, "in namespace payments-settlement-reconciliation-eu-west") {
			t.Errorf("allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
	t.Run("enforcementAction: warn admits, with the denials as warnings", func(t *testing.T) {
		rollout := "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: rollout}\nspec: {enforcementAction: warn}"
		r := review(t, newServer(t, true, rollout).Validating(), admissionv1.Create, raNoAudiences, "", false)
		if !r.Allowed || !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "would deny (enforcementAction: warn): MG101") }) ||
			!strings.Contains(r.AuditAnnotations["findings"], "MG101=deny") {
			t.Errorf("allowed=%v warnings=%v audit=%v", r.Allowed, r.Warnings, r.AuditAnnotations)
		}
	})
	t.Run("a finding accepted on the object, as check reports it", func(t *testing.T) {
		accepted := strings.Replace(raNoAudiences, "metadata: {name: web-jwt, namespace: shop}",
			`metadata: {name: web-jwt, namespace: shop, annotations: {ignore.meshguard.io/MG101: "tokens of this issuer are minted for this API only", ignore.meshguard.io/MG301: "the gateway requires tokens"}}`, 1)
		// A deny finding stays a denial unless a guardrail lets it be accepted.
		r := review(t, v, admissionv1.Create, accepted, "", false)
		if r.Allowed || !strings.Contains(r.Result.Message, "ignore.meshguard.io/MG101 suppresses a deny finding only where a MeshGuardrail names MG101 in spec.suppressible") {
			t.Errorf("without spec.suppressible: allowed=%v %v", r.Allowed, r.Result)
		}
		rail := "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: g}\nspec: {suppressible: [MG101]}"
		r = review(t, newServer(t, true, rail).Validating(), admissionv1.Create, accepted, "", false)
		if !r.Allowed || slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "MG101") || strings.Contains(w, "MG301") }) {
			t.Errorf("with spec.suppressible: [MG101]: allowed=%v warnings=%v", r.Allowed, r.Warnings)
		}
	})
	t.Run("invalid MeshGuardrail", func(t *testing.T) {
		r := review(t, v, admissionv1.Create, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: g}\nspec: {rules: {MG999: deny}}", "", false)
		if r.Allowed || !strings.Contains(r.Result.Message, "spec.rules[MG999]") {
			t.Errorf("allowed=%v %s", r.Allowed, r.Result.Message)
		}
	})
}

func TestPods(t *testing.T) {
	srv := newServer(t, true, shop, coverage)
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: web, image: web}]}"
	labelled := "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web, enablesecurity: shop}, annotations: {meshguard.io/covered-by: jwt-coverage}}\nspec: {containers: [{name: web, image: web}]}"

	r := review(t, srv.Mutating(), admissionv1.Create, pod, "", false)
	if !r.Allowed || r.PatchType == nil {
		t.Fatalf("no patch: %+v", r)
	}
	var ops []map[string]any
	if err := json.Unmarshal(r.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(ops)
	for _, want := range []string{`"path":"/metadata/labels/enablesecurity","value":"shop"`, `"path":"/metadata/annotations/meshguard.io~1covered-by","value":"jwt-coverage"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("patch %s lacks %s", got, want)
		}
	}
	if r := review(t, srv.Mutating(), admissionv1.Create, labelled, "", false); len(r.Patch) != 0 {
		t.Errorf("labelling again is not idempotent: %s", r.Patch)
	}
	r = review(t, srv.Validating(), admissionv1.Update, pod, labelled, false)
	if r.Allowed || !strings.Contains(r.Result.Message, "MG502") {
		t.Errorf("label removal: allowed=%v %s", r.Allowed, r.Result.Message)
	}
}

func TestBadInput(t *testing.T) {
	srv := newServer(t, true)
	v := srv.Validating()
	for name, body := range map[string]string{
		"not JSON":   "{{",
		"no request": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		reviews{handler: v}.ServeHTTP(rec, r)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.Allowed || out.Response.Result.Code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %s", name, rec.Code, rec.Body.String())
		}
	}
	// Bodies are capped (7 MiB, beside the limiter's tighter cap): an oversized review is
	// refused whole.
	huge := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"pad":"`), bytes.Repeat([]byte("x"), 8<<20)...)
	if r := post(t, v, append(huge, `"}}}`...)); r.Allowed || !strings.Contains(r.Result.Message, "too large") {
		t.Errorf("oversized body: %+v", r.Result)
	}
	unknown := review(t, v, admissionv1.Create, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}", "", false)
	if unknown.Allowed || unknown.Result.Code != http.StatusBadRequest || !strings.Contains(unknown.Result.Message, "does not judge ConfigMap") {
		t.Errorf("unknown kind: %+v", unknown.Result)
	}
	wrongType := review(t, v, admissionv1.Create, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: a}\nspec: {jwtRules: 3}", "", false)
	if wrongType.Allowed || wrongType.Result.Code != http.StatusBadRequest {
		t.Errorf("undecodable object: %+v", wrongType.Result)
	}
	// A field the schema does not know is a denial naming it, never a silent drop.
	protoNamed := review(t, v, admissionv1.Create, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: require-jwt, namespace: shop}\nspec: {action: DENY, rules: [{from: [{source: {not_request_principals: ['*']}}]}]}", "", false)
	if protoNamed.Allowed || !strings.Contains(protoNamed.Result.Message, `unknown field "spec.rules[0].from[0].source.not_request_principals"`) {
		t.Errorf("proto-named field: %+v", protoNamed.Result)
	}
	// A panic is the last line of defence: it becomes an error response, and serving goes on.
	broken := &Server{Synced: srv.Synced, Reader: srv.Reader, Log: logr.Discard()}
	if r := review(t, broken.Validating(), admissionv1.Create, raGood, "", false); r.Allowed || r.Result.Code != http.StatusInternalServerError {
		t.Errorf("panic: %+v", r.Result)
	}
	if r := review(t, v, admissionv1.Create, raGood, "", false); !r.Allowed {
		t.Errorf("after a panic: %+v", r.Result)
	}
}

// FuzzAdmissionReview posts arbitrary bodies to both webhooks: every answer must be a
// well-formed AdmissionReview, never a panic or a hang.
func FuzzAdmissionReview(f *testing.F) {
	srv := newServer(f, true, raGood, apRequire, shop, coverage)
	for _, m := range []string{raGood, raNoAudiences, apRequire, coverage,
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop, labels: {app: web}}\nspec: {hostNetwork: true}"} {
		for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete} {
			f.Add(reviewBody(f, op, m, m, false))
		}
	}
	handlers := []admission.Handler{srv.Validating(), srv.Mutating()}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range handlers {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			reviews{handler: h}.ServeHTTP(rec, r)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("HTTP %d, not an AdmissionReview: %s", rec.Code, rec.Body.String())
			}
		}
	})
}

// TestConcurrentDeletes: the two policies that each make a workload require a token are
// deleted at once. Each DELETE alone leaves the other enforcing, so on the cache alone
// both would be allowed and the workload left open: at most one is.
func TestConcurrentDeletes(t *testing.T) {
	for range 20 {
		srv := newServer(t, true, raGood, apRequire, apDenyAnonymous)
		v := srv.Validating()
		var allowed atomic.Int32
		done := make(chan struct{})
		for _, ap := range []string{apRequire, apDenyAnonymous} {
			go func() {
				defer func() { done <- struct{}{} }()
				if r := review(t, v, admissionv1.Delete, "", ap, false); r.Allowed {
					allowed.Add(1)
				}
			}()
		}
		<-done
		<-done
		if n := allowed.Load(); n != 1 {
			t.Fatalf("%d of the two DELETEs allowed", n)
		}
	}
}

// TestQuorumRead: another replica allowed the DELETE of one of a workload's two enforcing
// policies a moment ago, and this replica's cache does not show it yet. The DELETE of the
// other is judged on what the API server holds, and denied.
func TestQuorumRead(t *testing.T) {
	lagging := newServer(t, true, raGood, apRequire, apDenyAnonymous)
	lagging.Views = NewViews(lagging.Reader)
	if r := review(t, lagging.Validating(), admissionv1.Delete, "", apDenyAnonymous, false); !r.Allowed {
		t.Fatalf("on the cache alone the DELETE passes: %s", r.Result.Message)
	}
	lagging = newServer(t, true, raGood, apRequire, apDenyAnonymous)
	lagging.Views = NewViews(lagging.Reader)
	lagging.APIReader = newServer(t, true, raGood, apDenyAnonymous).Reader // web-require-jwt is gone
	if r := review(t, lagging.Validating(), admissionv1.Delete, "", apDenyAnonymous, false); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
		t.Errorf("judged on the API server's policies: allowed=%v %s", r.Allowed, r.Result.Message)
	}
	// A dry run is judged as the write would be.
	if r := review(t, lagging.Validating(), admissionv1.Delete, "", apDenyAnonymous, true); r.Allowed {
		t.Error("dry run: allowed")
	}
}

// interleave is a cache that, on its first list of Pods, lets another review run to its
// end before it answers: a write that another write overtakes while it judges, after it
// read the policies.
type interleave struct {
	client.Reader
	once    atomic.Bool
	between func()
}

func (r *interleave) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, pods := list.(*metav1.PartialObjectMetadataList); pods && r.once.CompareAndSwap(false, true) {
		r.between()
	}
	return r.Reader.List(ctx, list, opts...)
}

// TestWriteOvertaken: the DELETE of one of a workload's two enforcing policies is allowed
// while the DELETE of the other is being judged (no lock held between them). The second is
// then judged again, the first laid over, and denied: no workload opens.
func TestWriteOvertaken(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire, apDenyAnonymous)
	srv.Metrics = NewMetrics(prometheus.NewRegistry())
	v := srv.Validating()
	var first *admissionv1.AdmissionResponse
	srv.Reader = &interleave{Reader: srv.Reader, between: func() {
		done := make(chan struct{})
		go func() { // another goroutine, as another connection would be
			defer close(done)
			first = review(t, v, admissionv1.Delete, "", apRequire, false)
		}()
		<-done
	}}
	second := review(t, v, admissionv1.Delete, "", apDenyAnonymous, false)
	if !first.Allowed {
		t.Fatalf("the overtaking DELETE: %s", first.Result.Message)
	}
	if second.Allowed || !strings.Contains(second.Result.Message, "MG303") {
		t.Errorf("the overtaken DELETE: allowed=%v %v", second.Allowed, second.Result)
	}
	if n := testutil.ToFloat64(srv.Metrics.conflicts); n != 1 {
		t.Errorf("conflicts counted: %v", n)
	}
}

// TestWritesOfOtherNamespaces: a write allowed in another namespace while one is judged is
// no conflict: it is allowed at its first attempt.
func TestWritesOfOtherNamespaces(t *testing.T) {
	other := strings.ReplaceAll(apRequire, "namespace: shop", "namespace: books")
	srv := newServer(t, true, raGood, apRequire, apDenyAnonymous, other)
	srv.Metrics = NewMetrics(prometheus.NewRegistry())
	v := srv.Validating()
	srv.Reader = &interleave{Reader: srv.Reader, between: func() {
		if r := review(t, v, admissionv1.Delete, "", other, false); !r.Allowed {
			t.Errorf("the DELETE in books: %s", r.Result.Message)
		}
	}}
	if r := review(t, v, admissionv1.Delete, "", apDenyAnonymous, false); !r.Allowed {
		t.Errorf("the DELETE in shop: %s", r.Result.Message)
	}
	if n := testutil.ToFloat64(srv.Metrics.conflicts); n != 0 {
		t.Errorf("conflicts counted: %v", n)
	}
}

// TestAddingWritesReadNothing: the dry run of a DELETE that opens is judged on the API
// server's policies, and commits nothing; a CREATE that only adds checks is judged on the
// cache: it reads nothing from the API server, and the writes after it are judged without
// it until the cache shows it.
func TestAddingWritesReadNothing(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire)
	reads := &countingReader{Reader: srv.Reader}
	srv.APIReader = reads
	v := srv.Validating()
	if r := review(t, v, admissionv1.Delete, "", apRequire, true); r.Allowed {
		t.Errorf("the dry run of a DELETE that opens: allowed")
	}
	if reads.n.Load() == 0 {
		t.Errorf("the dry run of a DELETE did not read the API server")
	}
	before := reads.n.Load()
	if r := review(t, v, admissionv1.Create, apDenyAnonymous, "", false); !r.Allowed {
		t.Fatalf("the CREATE of a DENY policy: %s", r.Result.Message)
	}
	if reads.n.Load() != before {
		t.Errorf("the CREATE of a DENY policy read the API server")
	}
	if srv.pending.commits != 0 {
		t.Errorf("commits: %d", srv.pending.commits)
	}
	// Not laid over: it may yet fail, and until the cache shows it the DELETE of the other
	// policy is judged without it.
	if r := review(t, v, admissionv1.Delete, "", apRequire, false); r.Allowed {
		t.Errorf("the DELETE with the DENY policy on its way: allowed")
	}
}

// countingReader counts the lists read through it.
type countingReader struct {
	client.Reader
	n atomic.Int32
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.n.Add(1)
	return r.Reader.List(ctx, list, opts...)
}

// TestWritesThatMayFail: writes meshguard allowed may fail afterwards, and which of two
// writes of one object lands is not known until the cache shows it.
//   - A DELETE of web-deny-anonymous is allowed, then a CREATE of it (it may fail: it
//     still exists): the DELETE of web-require-jwt is judged as if the CREATE had failed,
//     and denied.
//   - A CREATE of web-require-jwt is allowed: the DELETE of web-deny-anonymous is judged
//     with it landed and with it failed, and denied.
//   - Of two UPDATEs of one policy at once, the second is refused (retry): one of them
//     fails, and which is not known; once the cache shows the object past the version the
//     first replaced, a write of it is judged again.
func TestWritesThatMayFail(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire, apDenyAnonymous)
	v := srv.Validating()
	if r := review(t, v, admissionv1.Delete, "", apDenyAnonymous, false); !r.Allowed {
		t.Fatalf("the DELETE of web-deny-anonymous: %s", r.Result.Message)
	}
	if r := review(t, v, admissionv1.Create, apDenyAnonymous, "", false); !r.Allowed {
		t.Fatalf("the CREATE of web-deny-anonymous: %s", r.Result.Message)
	}
	if r := review(t, v, admissionv1.Delete, "", apRequire, false); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
		t.Errorf("the DELETE of web-require-jwt, the CREATE on its way: allowed=%v %v", r.Allowed, r.Result)
	}

	// An ALLOW policy's CREATE is on its way, and may yet fail: the DELETE of the DENY
	// policy would open web if it does.
	srv = newServer(t, true, raGood, apDenyAnonymous)
	v = srv.Validating()
	if r := review(t, v, admissionv1.Create, apRequire, "", false); !r.Allowed {
		t.Fatalf("the CREATE of web-require-jwt: %s", r.Result.Message)
	}
	if r := review(t, v, admissionv1.Delete, "", apDenyAnonymous, false); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
		t.Errorf("the DELETE of web-deny-anonymous, the CREATE on its way: allowed=%v %v", r.Allowed, r.Result)
	}

	srv = newServer(t, true, raGood, apRequire, apDenyAnonymous)
	v = srv.Validating()
	var current securityv1.AuthorizationPolicy
	if err := srv.Reader.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "web-require-jwt"}, &current); err != nil {
		t.Fatal(err)
	}
	at := func(manifest, version string) string {
		return strings.Replace(manifest, "namespace: shop}", "namespace: shop, resourceVersion: \""+version+"\"}", 1)
	}
	base := current.ResourceVersion
	weaker := strings.Replace(apRequire, `rules: [{from: [{source: {requestPrincipals: ["`+iss+`/*"]}}]}]`, `rules: [{to: [{operation: {paths: ["/healthz"]}}]}]`, 1)
	if r := review(t, v, admissionv1.Update, at(weaker, base), at(apRequire, base), false); !r.Allowed {
		t.Fatalf("the first UPDATE: %s", r.Result.Message)
	}
	other := strings.Replace(weaker, "/healthz", "/ready", 1)
	if r := review(t, v, admissionv1.Update, at(other, base), at(apRequire, base), false); r.Allowed || !strings.Contains(r.Result.Message, "retry") {
		t.Errorf("the second UPDATE of the same version: allowed=%v %v", r.Allowed, r.Result)
	}
	// The first lands.
	current.Spec.Rules[0].From, current.Spec.Rules[0].To = nil, []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Paths: []string{"/healthz"}}}}
	if err := srv.Reader.(client.Client).Update(context.Background(), &current); err != nil {
		t.Fatal(err)
	}
	if r := review(t, v, admissionv1.Update, at(other, current.ResourceVersion), at(weaker, current.ResourceVersion), false); !r.Allowed {
		t.Errorf("an UPDATE of the version the first made: %s", r.Result.Message)
	}
}

// TestDryRunsOfSeveralObjects: the dry run of a DELETE of a collection (or of an apply of
// several objects) is judged object after object, each with the user's dry runs just
// before it laid over, as the real call is; another user's dry runs are not, and nothing
// is committed.
func TestDryRunsOfSeveralObjects(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire, apDenyAnonymous)
	v := srv.Validating()
	if r := reviewAs(t, v, "ci", admissionv1.Delete, "", apDenyAnonymous, true); !r.Allowed {
		t.Fatalf("the first item: %s", r.Result.Message)
	}
	if r := reviewAs(t, v, "ci", admissionv1.Delete, "", apRequire, true); r.Allowed || !strings.Contains(r.Result.Message, "MG303") {
		t.Errorf("the second item, the first gone: allowed=%v %s", r.Allowed, r.Result.Message)
	}
	if r := reviewAs(t, v, "someone-else", admissionv1.Delete, "", apRequire, true); !r.Allowed {
		t.Errorf("another user's dry run: %s", r.Result.Message)
	}
	if r := reviewAs(t, v, "someone-else", admissionv1.Delete, "", apRequire, false); !r.Allowed {
		t.Errorf("the real DELETE, with no write before it: %s", r.Result.Message)
	}
}

// TestManyWritesOnTheirWay: four ALLOW policies' CREATEs were allowed and the cache does
// not show them yet, more than a write is judged beside (each doubles the states it is
// judged in), as when a GitOps tool applies many policies at once. A fifth waits for the
// cache: allowed once the others show there, refused (retry) when they do not in time.
func TestManyWritesOnTheirWay(t *testing.T) {
	allowPolicy := func(name string) string {
		return strings.NewReplacer("web-require-jwt", name, "app: web", "app: "+name).Replace(apRequire)
	}
	for _, landing := range []bool{true, false} {
		srv := newServer(t, true, shop, raGood)
		srv.Metrics = NewMetrics(prometheus.NewRegistry())
		srv.Limits = DefaultLimits()
		if !landing {
			srv.Limits.CacheWait = 50 * time.Millisecond
		}
		v := srv.Validating()
		var onTheirWay []client.Object
		for i := range maxUnknownWrites + 1 {
			p := allowPolicy(fmt.Sprintf("p%d", i))
			if r := review(t, v, admissionv1.Create, p, "", false); !r.Allowed {
				t.Fatalf("CREATE %d: %s", i, r.Result.Message)
			}
			onTheirWay = append(onTheirWay, object(t, scheme(t), p))
		}
		if landing {
			time.AfterFunc(30*time.Millisecond, func() {
				for _, o := range onTheirWay {
					if err := srv.Reader.(client.Client).Create(context.Background(), o); err != nil {
						t.Error(err)
					}
				}
			})
		}
		r := review(t, v, admissionv1.Create, allowPolicy("last"), "", false)
		if landing && !r.Allowed {
			t.Errorf("the others landed while it waited: %s", r.Result.Message)
		}
		if !landing && (r.Allowed || !strings.Contains(r.Result.Message, "are not in effect yet; retry")) {
			t.Errorf("the others still on their way: allowed=%v %v", r.Allowed, r.Result)
		}
		if n := testutil.ToFloat64(srv.Metrics.cacheWaits); n != 1 {
			t.Errorf("writes that waited for the cache: %v, want 1", n)
		}
	}
}
