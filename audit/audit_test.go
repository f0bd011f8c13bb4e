package audit

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

func ra(t *testing.T, name, spec string) *policy.RequestAuthentication {
	o := &policy.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)}}
	if err := protojson.Unmarshal([]byte(spec), &o.Spec); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestSync: a report per policy with findings, owned by it, in either kind; a pass that
// changes nothing writes nothing; a fixed policy's report goes, and so does a deleted one's.
func TestSync(t *testing.T) {
	for _, kind := range []schema.GroupVersionKind{OpenReports, PolicyReports} {
		t.Run(kind.Kind, func(t *testing.T) { testSync(t, kind) })
	}
}

func testSync(t *testing.T, kind schema.GroupVersionKind) {
	ctx := context.Background()
	c := fakeClient(t)
	e := policy.NewEngine()
	noAudiences := `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`
	st := policy.NewSnapshot()
	st.Add(ra(t, "web-jwt", noAudiences))
	st.Add(ra(t, "api-jwt", noAudiences))
	st.Add(&policy.Workload{Kind: policy.KindPod, ObjectMeta: &metav1.ObjectMeta{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}}})

	var known Written
	pass := func(st *policy.Snapshot) int {
		t.Helper()
		writes, err := Sync(ctx, c, kind, Desired(e, st, st.NamespaceNames()), nil, &known)
		if err != nil {
			t.Fatal(err)
		}
		return writes
	}
	if w := pass(st); w != 2 {
		t.Errorf("first pass: %d writes, want 2", w)
	}
	r := written(t, c, kind)["meshguard-requestauthentication-web-jwt"]
	if r == nil || r.Summary.Fail == 0 || r.Results[0].Policy != "MG101" || r.Results[0].Result != "fail" || r.Results[0].Properties["field"] != "spec.jwtRules[0].audiences" ||
		r.Scope.Name != "web-jwt" || r.OwnerReferences[0].UID != "uid-web-jwt" || r.Labels[managedByLabel] != managedBy ||
		len(r.Results[0].Subjects) != 2 || r.Results[0].Subjects[1].Name != "web-0" {
		t.Errorf("report %+v", r)
	}
	if w := pass(st); w != 0 {
		t.Errorf("a pass that changes nothing wrote %d times", w)
	}
	// A label someone else put on a report stays when meshguard rewrites it.
	var u unstructured.Unstructured
	u.SetGroupVersionKind(kind)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "meshguard-requestauthentication-web-jwt"}, &u); err != nil {
		t.Fatal(err)
	}
	u.SetLabels(map[string]string{managedByLabel: managedBy, "team": "payments"})
	if err := c.Update(ctx, &u); err != nil {
		t.Fatal(err)
	}
	// A report someone else emptied is written again, whatever marks it kept.
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "meshguard-requestauthentication-web-jwt"}, &u); err != nil {
		t.Fatal(err)
	}
	delete(u.Object, "results")
	u.Object["summary"] = map[string]any{"pass": int64(1)}
	u.SetGeneration(u.GetGeneration() + 1) // as the API server does, which the fake does not
	if err := c.Update(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if w := pass(st); w != 1 {
		t.Errorf("a pass after the report was emptied wrote %d times, want 1", w)
	}
	if r := written(t, c, kind)["meshguard-requestauthentication-web-jwt"]; r == nil || len(r.Results) == 0 || r.Summary.Fail == 0 {
		t.Errorf("the emptied report was not written again: %+v", r)
	}
	fixed := policy.NewSnapshot()
	fixed.Add(ra(t, "web-jwt", `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["web"]}]}`))
	pass(fixed)
	left := written(t, c, kind)
	if r := left["meshguard-requestauthentication-web-jwt"]; r == nil || r.Labels["team"] != "payments" {
		t.Errorf("the rewritten report: %+v", r)
	}
	for name, r := range left {
		for _, res := range r.Results {
			if res.Policy == "MG101" {
				t.Errorf("%s still reports MG101 once fixed", name)
			}
		}
	}
	if _, ok := left["meshguard-requestauthentication-api-jwt"]; ok {
		t.Error("the deleted policy's report stays")
	}
}

// fakeClient is a client of an empty cluster that serves both kinds of report. The fake
// needs a type for each kind it serves: a PolicyReport is held as a Report, the schema it
// shares (the e2e test writes them through the real CRD).
func fakeClient(t *testing.T) client.Client {
	t.Helper()
	scheme, err := kinds.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	scheme.AddKnownTypeWithName(PolicyReports, &reportsv1alpha1.Report{})
	scheme.AddKnownTypeWithName(PolicyReports.GroupVersion().WithKind("PolicyReportList"), &reportsv1alpha1.ReportList{})
	return fake.NewClientBuilder().WithScheme(scheme).Build()
}

// written are the reports of kind in the cluster, by name.
func written(t *testing.T, c client.Client, kind schema.GroupVersionKind) map[string]*reportsv1alpha1.Report {
	t.Helper()
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(kind.GroupVersion().WithKind(kind.Kind + "List"))
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]*reportsv1alpha1.Report{}
	for i := range list.Items {
		if list.Items[i].GetKind() != kind.Kind {
			t.Errorf("%s listed as a %s", list.Items[i].GetName(), list.Items[i].GetKind())
		}
		r, err := decode(&list.Items[i])
		if err != nil {
			t.Fatal(err)
		}
		out[r.Name] = r
	}
	return out
}

// withSpec reads a spec in Istio's JSON into a policy's spec.
func withSpec[T interface {
	*policy.RequestAuthentication | *policy.AuthorizationPolicy
}](tb testing.TB, o T, spec string) metav1.Object {
	var err error
	switch o := any(o).(type) {
	case *policy.RequestAuthentication:
		err = protojson.Unmarshal([]byte(spec), &o.Spec)
	case *policy.AuthorizationPolicy:
		err = protojson.Unmarshal([]byte(spec), &o.Spec)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return any(o).(metav1.Object)
}

// TestWorkloadReports: Pods are judged as they run, one for each owner: a Deployment's Pod
// that lost its coverage label while meshguard was down is reported under the Deployment,
// owned by the Pod's ReplicaSet.
func TestWorkloadReports(t *testing.T) {
	st := policy.NewSnapshot()
	st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"jwt": "required"}}})
	st.Add(&v1alpha1.MeshGuardrail{ObjectMeta: metav1.ObjectMeta{Name: "cover"}, Spec: v1alpha1.MeshGuardrailSpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"jwt": "required"}},
		Coverage:          &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}}}})
	rs := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8", UID: "rs-uid"}
	for _, name := range []string{"web-7d9f8-a", "web-7d9f8-b"} {
		st.Add(&policy.Workload{Kind: policy.KindPod, ObjectMeta: &metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID(name),
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8"}, OwnerReferences: []metav1.OwnerReference{rs}}})
	}
	var found *reportsv1alpha1.Report
	for _, r := range Desired(policy.NewEngine(), st, st.NamespaceNames()) {
		if r.Name == "meshguard-deployment-web" {
			found = r
		}
	}
	if found == nil || found.OwnerReferences[0].UID != "rs-uid" || found.Scope.Kind != "Deployment" ||
		!slices.ContainsFunc(found.Results, func(r reportsv1alpha1.ReportResult) bool { return r.Policy == "MG506" && r.Result == "fail" }) {
		t.Errorf("the Deployment's report: %+v", found)
	}
}

// TestIncremental: a change marks its namespace (a Namespace its own, a guardrail every
// one) for the next pass, and a pass over some namespaces syncs their Reports alone.
func TestIncremental(t *testing.T) {
	r := &Runner{}
	r.Changed(ra(t, "web-jwt", `{}`))
	r.Changed(toolscache.DeletedFinalStateUnknown{Obj: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "billing"}}})
	if got := r.take(false); !slices.Equal(got, []string{"billing", "shop"}) {
		t.Errorf("dirty %v", got)
	}
	if got := r.take(false); got == nil || len(got) != 0 {
		t.Errorf("after a pass: %v", got)
	}
	r.Changed(&v1alpha1.MeshGuardrail{ObjectMeta: metav1.ObjectMeta{Name: "cover"}})
	if got := r.take(false); got != nil {
		t.Errorf("a guardrail changed: %v, want every namespace", got)
	}

	ctx := context.Background()
	c := fakeClient(t)
	st := policy.NewSnapshot()
	noAudiences := `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`
	st.Add(ra(t, "web-jwt", noAudiences))
	other := ra(t, "api-jwt", noAudiences)
	other.Namespace = "billing"
	st.Add(other)
	e := policy.NewEngine()
	var known Written
	if _, err := Sync(ctx, c, OpenReports, Desired(e, st, st.NamespaceNames()), nil, &known); err != nil {
		t.Fatal(err)
	}
	// billing's policy goes; a pass over shop alone leaves billing's Report be.
	if _, err := Sync(ctx, c, OpenReports, Desired(e, st, []string{"shop"}), []string{"shop"}, &known); err != nil {
		t.Fatal(err)
	}
	if got := written(t, c, OpenReports); len(got) != 2 {
		t.Errorf("%d reports after a pass over shop, want both", len(got))
	}
}

// TestDesiredWhateverTheOrder: the reports do not depend on the order a cache lists Pods
// in (it differs between replicas and between passes), or a pass would rewrite them, and
// two replicas would rewrite each other's.
func TestDesiredWhateverTheOrder(t *testing.T) {
	noAudiences := `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`
	rs := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "api-6c4d9", UID: "rs-uid"}
	var pods []*policy.Workload
	for i := range 6 {
		o := &metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), UID: types.UID(fmt.Sprint(i)), Labels: map[string]string{"app": "web"}}
		if i%2 == 1 { // Pods of one Deployment, labelled apart
			o.Name, o.OwnerReferences = fmt.Sprintf("api-6c4d9-%d", i), []metav1.OwnerReference{rs}
			o.Labels = map[string]string{"app": "web", "pod-template-hash": "6c4d9", "n": fmt.Sprint(i)}
		}
		pods = append(pods, &policy.Workload{Kind: policy.KindPod, ObjectMeta: o})
	}
	desired := func(order []*policy.Workload) []*reportsv1alpha1.Report {
		st := policy.NewSnapshot()
		st.Add(ra(t, "web-jwt", noAudiences))
		for _, p := range order {
			st.Add(p)
		}
		return Desired(policy.NewEngine(), st, st.NamespaceNames())
	}
	want := desired(pods)
	reversed := slices.Clone(pods)
	slices.Reverse(reversed)
	got := desired(reversed)
	if len(got) != len(want) {
		t.Fatalf("%d reports, then %d", len(want), len(got))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("Pods listed in another order give another report %s:\n%+v\n%+v", want[i].Name, got[i].Results, want[i].Results)
		}
	}
}

// staleMetadata is a client whose lists of metadata come from a cache that does not show
// the reports yet (a watch broken a moment ago).
type staleMetadata struct{ client.Client }

func (s staleMetadata) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*metav1.PartialObjectMetadataList); ok {
		return nil
	}
	return s.Client.List(ctx, list, opts...)
}

// TestSyncBehindTheAPIServer: a report the listed metadata does not show yet, but which is
// there, is written over, not failed on.
func TestSyncBehindTheAPIServer(t *testing.T) {
	ctx := context.Background()
	c := fakeClient(t)
	e := policy.NewEngine()
	st := policy.NewSnapshot()
	st.Add(ra(t, "web-jwt", `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`))
	desired := Desired(e, st, st.NamespaceNames())
	var known Written
	if _, err := Sync(ctx, c, OpenReports, desired, nil, &known); err != nil {
		t.Fatal(err)
	}
	var again Written
	if _, err := Sync(ctx, staleMetadata{c}, OpenReports, desired, nil, &again); err != nil {
		t.Errorf("a pass behind the API server: %v", err)
	}
}

// TestSuppressedAsCached: a suppression on a policy reaches the audit through the cache,
// which keeps the annotation when it trims the object: the finding is reported as skip.
func TestSuppressedAsCached(t *testing.T) {
	o := ra(t, "web-jwt", `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`)
	o.Annotations = map[string]string{
		policy.SuppressAnnotationPrefix + "MG101":          "tokens of this issuer are minted for this API only",
		"kubectl.kubernetes.io/last-applied-configuration": "{}",
	}
	kinds.Lookup("security.istio.io", policy.KindRequestAuthentication).Keep(o)
	st := policy.NewSnapshot()
	st.Add(o)
	st.Add(&policy.MeshGuardrail{ObjectMeta: metav1.ObjectMeta{Name: "suppressible"}, Spec: v1alpha1.MeshGuardrailSpec{Suppressible: []string{"MG101"}}})
	var results []string
	for _, r := range Desired(policy.NewEngine(), st, []string{"shop"}) {
		for _, res := range r.Results {
			results = append(results, res.Policy+" "+string(res.Result))
		}
	}
	if !slices.Contains(results, "MG101 skip") {
		t.Errorf("results %v, want MG101 skip", results)
	}
}
