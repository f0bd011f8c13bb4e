// Package audit judges what a cluster already runs, with the engine admission uses, and
// keeps one report (openreports.io Report, or wgpolicyk8s.io PolicyReport) per security
// policy and per workload with findings:
// policies created before meshguard was installed, workloads changed while it was down.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/live"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// ManagedBy labels the Reports meshguard writes, and only those are its to replace.
const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "meshguard"
)

// Desired returns the Reports the objects of namespaces call for in a state: one per
// security policy, and per workload (one Pod for each owner, as it runs), with findings;
// each in the object's namespace, owned by it (so that it goes when it goes), its results
// in catalog order.
func Desired(e *policy.Engine, st policy.State, namespaces []string) []*reportsv1alpha1.Report {
	var out []*reportsv1alpha1.Report
	judge := func(o metav1.Object) *reportsv1alpha1.Report {
		r := report(o, e.Review(policy.Review{Operation: policy.Audit, Object: o, State: st}))
		if r != nil {
			out = append(out, r)
		}
		return r
	}
	for _, ns := range namespaces {
		var policies []metav1.Object
		for _, o := range st.RequestAuthentications(ns) {
			policies = append(policies, o)
		}
		for _, o := range st.AuthorizationPolicies(ns) {
			policies = append(policies, o)
		}
		for _, o := range st.PeerAuthentications(ns) {
			policies = append(policies, o)
		}
		for _, o := range policies {
			if r := judge(o); r != nil {
				involve(r, live.Owners(policy.Selected(st, o)))
			}
		}
		// Workloads, as they run: relabelled, or created unlabelled, while meshguard was down.
		for _, w := range live.Owners(products.Covered(st, ns)) {
			judge(w)
		}
	}
	return out
}

// report is the Report of one object's findings; nil without findings.
func report(o metav1.Object, findings []policy.Finding) *reportsv1alpha1.Report {
	if len(findings) == 0 {
		return nil
	}
	kind, apiVersion := policy.KindOf(o), "security.istio.io/v1"
	owner := metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: o.GetName(), UID: o.GetUID()}
	if w, ok := o.(*policy.Workload); ok {
		// The owner named (a Deployment) is read through its Pods: the Report belongs to
		// the Pods' own owner (a ReplicaSet), or to the Pod.
		kind, apiVersion = w.Kind, ""
		owner = metav1.OwnerReference{APIVersion: "v1", Kind: policy.KindPod, Name: w.Name, UID: w.GetUID()} // a Pod no one owns stands for itself
		if refs := w.GetOwnerReferences(); len(refs) > 0 {
			owner = refs[0]
		}
	}
	ref := corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()}
	if _, isWorkload := o.(*policy.Workload); !isWorkload {
		ref.UID = o.GetUID()
	}
	r := &reportsv1alpha1.Report{
		ObjectMeta: metav1.ObjectMeta{
			Name:      reportName(kind, o.GetName()),
			Namespace: o.GetNamespace(),
			Labels:    map[string]string{managedByLabel: managedBy},
		},
		Source: managedBy,
		Scope:  &ref,
	}
	if owner.UID != "" {
		r.OwnerReferences = []metav1.OwnerReference{{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID}}
	}
	for _, f := range findings {
		result, severity := reportsv1alpha1.Result("warn"), reportsv1alpha1.ResultSeverity("medium")
		properties := map[string]string{"field": f.Field, "fix": f.Fix}
		switch {
		case f.Suppressed != nil:
			// Accepted on the object: the reason is kept, and the finding fails nothing.
			result = "skip"
			properties["suppressed"] = f.Suppressed.Reason
			r.Summary.Skip++
		case f.Action == policy.Deny:
			result, severity = "fail", "high"
			r.Summary.Fail++
		default:
			r.Summary.Warn++
		}
		r.Results = append(r.Results, reportsv1alpha1.ReportResult{
			Source: managedBy, Policy: f.Rule, Rule: f.Name, Category: category(f.Rule), Severity: severity, Result: result,
			Subjects:    []corev1.ObjectReference{ref},
			Description: f.Message,
			Properties:  properties,
		})
	}
	slices.SortStableFunc(r.Results, func(a, b reportsv1alpha1.ReportResult) int {
		return strings.Compare(a.Policy+a.Properties["field"], b.Policy+b.Properties["field"])
	})
	return r
}

// maxSubjects bounds the workloads a result names: a mesh-wide policy applies to every
// workload of the cluster, and a Report is one object of at most etcd's 1.5 MiB.
const maxSubjects = 100

// involve adds to each result the workloads the policy applies to (one for each owner),
// after the policy itself; beyond maxSubjects, properties.moreResources counts the rest.
func involve(r *reportsv1alpha1.Report, workloads []*policy.Workload) {
	var refs []corev1.ObjectReference
	for _, w := range workloads {
		refs = append(refs, corev1.ObjectReference{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name})
	}
	more := 0
	if len(refs) > maxSubjects {
		refs, more = refs[:maxSubjects], len(refs)-maxSubjects
	}
	for i := range r.Results {
		r.Results[i].Subjects = append(r.Results[i].Subjects, refs...)
		if more > 0 {
			r.Results[i].Properties["moreResources"] = fmt.Sprint(more)
		}
	}
}

// category names a rule's family, by the hundreds of its ID.
func category(rule string) string {
	families := map[byte]string{'1': "RequestAuthentication", '2': "AuthorizationPolicy", '3': "cross-resource", '4': "scope",
		'5': "coverage", '6': "PeerAuthentication", '7': "Istio version", '8': "ambient"}
	if len(rule) < 3 {
		return ""
	}
	return families[rule[2]]
}

// reportName names the Report of an object: meshguard-<kind>-<name>, hashed where longer
// than an object name may be.
func reportName(kind, name string) string {
	n := "meshguard-" + strings.ToLower(kind) + "-" + name
	if len(n) <= 253 {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return n[:200] + "-" + hex.EncodeToString(sum[:8])
}

// Sync makes meshguard's reports of kind (OpenReports or PolicyReports) in namespaces
// (nil: all) the desired ones: it creates the missing, rewrites those whose content
// differs from what it would write, deletes the others there, and writes nothing else: a
// pass that changes nothing writes nothing. It returns the writes made.
//
// What a report says is read only where it may have changed since meshguard wrote it:
// written remembers the generation of each report meshguard wrote or checked, and the
// API server bumps it at every change of what the report says, by anyone. A mark on the
// report would not do: whoever may edit a report may edit its marks. The reports' metadata
// is listed; those of another generation than remembered (all, on a replica's first pass)
// are read whole.
func Sync(ctx context.Context, c client.Client, kind schema.GroupVersionKind, desired []*reportsv1alpha1.Report, namespaces []string, written *Written) (int, error) {
	// Listed in the namespaces judged only: an incremental pass reads one namespace's.
	scopes := []string{metav1.NamespaceAll}
	if namespaces != nil {
		scopes = namespaces
	}
	current := map[string]*metav1.PartialObjectMetadata{}
	for _, ns := range scopes {
		var existing metav1.PartialObjectMetadataList
		existing.SetGroupVersionKind(kind.GroupVersion().WithKind(kind.Kind + "List"))
		if err := c.List(ctx, &existing, client.InNamespace(ns), client.MatchingLabels{managedByLabel: managedBy}); err != nil {
			return 0, fmt.Errorf("listing meshguard's %s: %w", kind.Kind, err)
		}
		for i := range existing.Items {
			r := &existing.Items[i]
			r.SetGroupVersionKind(kind)
			current[r.Namespace+"/"+r.Name] = r
		}
	}
	says, err := written.contents(ctx, c, kind, current)
	if err != nil {
		return 0, err
	}
	writes := 0
	for _, want := range desired {
		key := want.Namespace + "/" + want.Name
		sum, err := contentHash(want)
		if err != nil {
			return writes, fmt.Errorf("report %s: %w", key, err)
		}
		have, ok := current[key]
		delete(current, key)
		if ok && says(key, have) == sum {
			continue
		}
		obj, err := encode(kind, want)
		if err != nil {
			return writes, fmt.Errorf("report %s: %w", key, err)
		}
		if !ok {
			err = c.Create(ctx, obj)
			if apierrors.IsAlreadyExists(err) {
				// The list was behind the API server (a watch broken a moment ago, a write
				// of the replica that led before): write over what is there.
				// Read whole: a read of metadata would come from the same cache.
				var there unstructured.Unstructured
				there.SetGroupVersionKind(kind)
				if err = c.Get(ctx, client.ObjectKeyFromObject(obj), &there); err == nil {
					have = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ResourceVersion: there.GetResourceVersion(),
						Labels: there.GetLabels(), Annotations: there.GetAnnotations()}}
					ok = true
				}
			}
		}
		if ok {
			// What others set on the report (labels, annotations) is kept.
			obj.SetResourceVersion(have.ResourceVersion)
			obj.SetLabels(merged(have.Labels, obj.GetLabels()))
			obj.SetAnnotations(merged(have.Annotations, obj.GetAnnotations()))
			err = c.Update(ctx, obj)
		}
		if err != nil {
			return writes, fmt.Errorf("writing %s %s: %w", kind.Kind, key, err)
		}
		written.remember(key, obj.GetGeneration(), sum)
		writes++
	}
	for key, stale := range current {
		if err := c.Delete(ctx, stale); client.IgnoreNotFound(err) != nil {
			return writes, fmt.Errorf("deleting %s %s: %w", kind.Kind, key, err)
		}
		written.forget(key)
		writes++
	}
	return writes, nil
}

// Written is what meshguard knows of the reports it wrote or read: by namespace/name, the
// generation and the hash of what the report said then. It is safe for concurrent use.
type Written struct {
	mu      sync.Mutex
	reports map[string]writtenReport
}

type writtenReport struct {
	generation int64
	sum        string
}

func (w *Written) remember(key string, generation int64, sum string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reports == nil {
		w.reports = map[string]writtenReport{}
	}
	w.reports[key] = writtenReport{generation, sum}
}

func (w *Written) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.reports, key)
}

// contents returns what each current report says, as a hash: remembered where its
// generation is the one remembered, else read, with the other reports of its namespace,
// a page at a time.
func (w *Written) contents(ctx context.Context, c client.Client, kind schema.GroupVersionKind, current map[string]*metav1.PartialObjectMetadata) (func(key string, have *metav1.PartialObjectMetadata) string, error) {
	w.mu.Lock()
	stale := map[string]bool{}
	for key, have := range current {
		if known, ok := w.reports[key]; !ok || known.generation != have.Generation {
			stale[have.Namespace] = true
		}
	}
	w.mu.Unlock()
	for _, ns := range slices.Sorted(maps.Keys(stale)) {
		if err := w.read(ctx, c, kind, ns); err != nil {
			return nil, err
		}
	}
	return func(key string, have *metav1.PartialObjectMetadata) string {
		w.mu.Lock()
		defer w.mu.Unlock()
		if known, ok := w.reports[key]; ok && known.generation == have.Generation {
			return known.sum
		}
		return "" // changed meanwhile: written again
	}, nil
}

// reportsPage is how many reports a whole list reads at once.
const reportsPage = 500

// read remembers what meshguard's reports of kind in namespace ns say, listed whole.
func (w *Written) read(ctx context.Context, c client.Client, kind schema.GroupVersionKind, ns string) error {
	opts := []client.ListOption{client.InNamespace(ns), client.MatchingLabels{managedByLabel: managedBy}, client.Limit(reportsPage)}
	for {
		var page unstructured.UnstructuredList
		page.SetGroupVersionKind(kind.GroupVersion().WithKind(kind.Kind + "List"))
		if err := c.List(ctx, &page, opts...); err != nil {
			return fmt.Errorf("reading meshguard's %s: %w", kind.Kind, err)
		}
		for i := range page.Items {
			u := &page.Items[i]
			r, err := decode(u)
			if err != nil {
				return fmt.Errorf("reading %s %s/%s: %w", kind.Kind, u.GetNamespace(), u.GetName(), err)
			}
			sum, err := contentHash(r)
			if err != nil {
				return err
			}
			w.remember(u.GetNamespace()+"/"+u.GetName(), u.GetGeneration(), sum)
		}
		if page.GetContinue() == "" {
			return nil
		}
		opts = append(opts[:3:3], client.Continue(page.GetContinue()))
	}
}

// contentHash is the hash of what a report says, and to whom it belongs.
func contentHash(r *reportsv1alpha1.Report) (string, error) {
	data, err := json.Marshal(struct {
		Scope   *corev1.ObjectReference        `json:"scope"`
		Summary reportsv1alpha1.ReportSummary  `json:"summary"`
		Results []reportsv1alpha1.ReportResult `json:"results"`
		Owners  []metav1.OwnerReference        `json:"owners"`
	}{r.Scope, r.Summary, r.Results, r.OwnerReferences})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// merged is base with over's entries on top.
func merged(base, over map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, over)
	return out
}
