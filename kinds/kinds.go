// Package kinds is the one table of the kinds meshguard reads: for each kind its group,
// versions and resource, what the engine makes of it, what the webhook's cache keeps of it,
// what the webhooks review, and its decoder. `meshguard check` and the webhook read objects
// through it, with one semantics: Kubernetes JSON names only, as the CRD schemas and the
// API types define them. The informers, the RBAC rules and the webhook configurations are
// derived from it or tested against it. Adding a kind is adding a row.
package kinds

import (
	"slices"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// Role is what the engine makes of a kind's objects.
type Role int

const (
	// Policy kinds are the Istio security policies the engine judges, and holds per
	// namespace, oldest first, as Istio breaks ties.
	Policy Role = iota
	// Workload kinds are what policies select: Pods, and offline the pod templates of
	// workload controllers. The engine judges them too (coverage, enforceability).
	Workload
	// Service kinds tell the engine which ports and workloads a Service fronts.
	Service
	// Setting kinds say which guardrails are in force where: guardrails, and the
	// namespaces whose labels they select.
	Setting
	// Proxy kinds are the proxies policies attach to by targetRefs: Gateway API gateways,
	// an ingress or a waypoint.
	Proxy
)

// Cache is what the webhook's informer cache keeps of a kind.
type Cache int

const (
	// NotCached kinds are read offline only.
	NotCached Cache = iota
	// Whole objects are kept, without managed fields and with only the annotations the
	// rules read (Kind.Annotations).
	Whole
	// MetadataOnly kinds are watched as metadata, of which only what the rules read is
	// kept (Kind.Keep): a cluster's Pods are its most numerous objects.
	MetadataOnly
)

// Kind is one row of the table.
type Kind struct {
	schema.GroupKind
	// Versions are the versions the API server serves, each decoded alike.
	Versions []string
	// Resource is the kind's plural resource name, as RBAC and webhook rules name it.
	Resource      string
	ClusterScoped bool
	// Optional kinds come from CRDs a cluster may not have (the Gateway API): there, it
	// has none of them, and meshguard serves on.
	Optional bool
	Role     Role
	Cache    Cache
	// Validate and Mutate are the operations the validating and mutating webhooks review.
	Validate, Mutate []admissionv1.Operation
	// StatusLabels: writes to the kind's status subresource can change its labels (the API
	// server resets only a Pod's spec there), so the validating webhook reviews status
	// UPDATEs as the object's.
	StatusLabels bool
	// Annotations are the annotations the rules read of the kind's objects: the cache
	// keeps no others (kubectl's copy of the last applied configuration alone is as large
	// as the object). A rule that reads a new one adds it here; TestGolden catches a miss.
	Annotations []string

	// typed returns the kind's API type, against which a manifest is checked field by
	// field (see Decode).
	typed func() any
	// decode reads an object of the kind from its JSON into what the engine judges. It
	// rejects what it reads but does not know: a misspelt or proto-named spec field.
	decode func([]byte) (metav1.Object, error)
}

var (
	allOperations   = []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	createAndUpdate = []admissionv1.Operation{admissionv1.Create, admissionv1.Update}
	createOnly      = []admissionv1.Operation{admissionv1.Create}
	// Services and ServiceEntries are reviewed when created or when they change a
	// waypoint binding, Namespaces when they change one, Gateways when they change what
	// they serve or go (MG812), HTTPRoutes when written (MG809): the webhook
	// configurations' matchConditions say when.
	updateOnly       = []admissionv1.Operation{admissionv1.Update}
	updateAndDelete  = []admissionv1.Operation{admissionv1.Update, admissionv1.Delete}
	istioVersions    = []string{"v1", "v1beta1"}
	securityIstioIO  = securityv1.SchemeGroupVersion.Group
	workloadVersions = []string{"v1"}
	// workloadAnnotations are what the Pod rules read: coverage, Istio's sidecar controls,
	// and ambient enrolment.
	workloadAnnotations = []string{policy.CoverageAnnotation, policy.CoveredByAnnotation, policy.SidecarInjectLabel, policy.ExcludeInboundAnnotation, policy.IncludeInboundAnnotation, policy.InterceptionModeAnnotation, policy.AmbientRedirectionAnnotation, policy.BypassInboundCaptureAnnotation}
)

// table is every kind meshguard reads, one row each.
var table = []Kind{
	securityPolicy(policy.KindRequestAuthentication, "requestauthentications", nil, func() (metav1.Object, *metav1.ObjectMeta, any) {
		o := &securityv1.RequestAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	securityPolicy(policy.KindAuthorizationPolicy, "authorizationpolicies", []string{policy.DryRunAnnotation}, func() (metav1.Object, *metav1.ObjectMeta, any) {
		o := &securityv1.AuthorizationPolicy{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	securityPolicy(policy.KindPeerAuthentication, "peerauthentications", nil, func() (metav1.Object, *metav1.ObjectMeta, any) {
		o := &securityv1.PeerAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	{
		GroupKind: networkingv1.SchemeGroupVersion.WithKind(policy.KindServiceEntry).GroupKind(), Versions: []string{"v1", "v1beta1", "v1alpha3"},
		Resource: "serviceentries", Optional: true, Role: Service, Cache: Whole, Validate: createAndUpdate,
		typed: istioManifest,
		decode: istio(func() (metav1.Object, *metav1.ObjectMeta, any) {
			o := &networkingv1.ServiceEntry{}
			return o, &o.ObjectMeta, &o.Spec
		}),
	},
	{
		GroupKind: v1alpha1.GroupVersion.WithKind(v1alpha1.Kind).GroupKind(), Versions: []string{v1alpha1.GroupVersion.Version},
		Resource: "meshguardrails", ClusterScoped: true, Role: Setting, Cache: Whole, Validate: createAndUpdate,
		typed: func() any { return &v1alpha1.MeshGuardrail{} }, decode: guardrail,
	},
	{
		GroupKind: schema.GroupKind{Kind: policy.KindPod}, Versions: workloadVersions,
		Resource: "pods", Role: Workload, Cache: MetadataOnly, Validate: createAndUpdate, Mutate: createOnly, StatusLabels: true,
		Annotations: workloadAnnotations,
		typed:       func() any { return &corev1.Pod{} }, decode: pod,
	},
	{
		GroupKind: schema.GroupKind{Kind: policy.KindService}, Versions: workloadVersions,
		Resource: "services", Role: Service, Cache: Whole, Validate: createAndUpdate,
		typed: func() any { return &corev1.Service{} }, decode: kube[corev1.Service],
	},
	{
		GroupKind: schema.GroupKind{Kind: policy.KindNamespace}, Versions: workloadVersions,
		Resource: "namespaces", ClusterScoped: true, Role: Setting, Cache: Whole, Validate: updateOnly,
		typed: func() any { return &corev1.Namespace{} }, decode: kube[corev1.Namespace],
	},
	{
		GroupKind: schema.GroupKind{Group: gatewayv1.GroupName, Kind: policy.KindGateway}, Versions: []string{"v1", "v1beta1"},
		Resource: "gateways", Optional: true, Role: Proxy, Cache: Whole, Validate: updateAndDelete,
		typed: func() any { return &gatewayv1.Gateway{} }, decode: kube[gatewayv1.Gateway],
	},
	{
		GroupKind: schema.GroupKind{Group: gatewayv1.GroupName, Kind: policy.KindHTTPRoute}, Versions: []string{"v1", "v1beta1"},
		Resource: "httproutes", Optional: true, Role: Proxy, Cache: Whole, Validate: createAndUpdate,
		typed: func() any { return &gatewayv1.HTTPRoute{} }, decode: kube[gatewayv1.HTTPRoute],
	},
	{
		GroupKind: schema.GroupKind{Group: gatewayv1.GroupName, Kind: policy.KindGatewayClass}, Versions: []string{"v1", "v1beta1"},
		Resource: "gatewayclasses", ClusterScoped: true, Optional: true, Role: Proxy, Cache: Whole,
		typed: func() any { return &gatewayv1.GatewayClass{} }, decode: kube[gatewayv1.GatewayClass],
	},
	controller(appsv1.SchemeGroupVersion, "Deployment", "deployments", func() any { return &appsv1.Deployment{} }),
	controller(appsv1.SchemeGroupVersion, "StatefulSet", "statefulsets", func() any { return &appsv1.StatefulSet{} }),
	controller(appsv1.SchemeGroupVersion, "DaemonSet", "daemonsets", func() any { return &appsv1.DaemonSet{} }),
	controller(appsv1.SchemeGroupVersion, "ReplicaSet", "replicasets", func() any { return &appsv1.ReplicaSet{} }),
	controller(batchv1.SchemeGroupVersion, "Job", "jobs", func() any { return &batchv1.Job{} }),
	controller(batchv1.SchemeGroupVersion, "CronJob", "cronjobs", func() any { return &batchv1.CronJob{} }),
}

// securityPolicy is the row of an Istio security policy, reviewed on every change, whose
// versions share one schema and are all decoded into the v1 types.
func securityPolicy(kind, resource string, annotations []string, newObject func() (metav1.Object, *metav1.ObjectMeta, any)) Kind {
	return Kind{
		GroupKind: schema.GroupKind{Group: securityIstioIO, Kind: kind}, Versions: istioVersions,
		Resource: resource, Role: Policy, Cache: Whole, Validate: allOperations, Annotations: annotations,
		typed: istioManifest, decode: istio(newObject),
	}
}

// controller is the row of a workload controller, whose pod template is read offline as
// the workloads it will make.
func controller(gv schema.GroupVersion, kind, resource string, typed func() any) Kind {
	return Kind{
		GroupKind: gv.WithKind(kind).GroupKind(), Versions: []string{gv.Version},
		Resource: resource, Role: Workload, Cache: NotCached, Annotations: workloadAnnotations,
		typed: typed, decode: podTemplate(kind),
	}
}

// All returns every row of the table.
func All() []*Kind {
	rows := make([]*Kind, len(table))
	for i := range table {
		rows[i] = &table[i]
	}
	return rows
}

// Lookup returns the row of a group and kind, or nil for kinds meshguard does not read.
func Lookup(group, kind string) *Kind {
	for i := range table {
		if table[i].Group == group && table[i].Kind == kind {
			return &table[i]
		}
	}
	return nil
}

// Preferred is the kind's first version, the one its cache and informer use.
func (k *Kind) Preferred() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: k.Group, Version: k.Versions[0], Kind: k.Kind}
}

// Serves tells whether version is one the kind is read at.
func (k *Kind) Serves(version string) bool { return slices.Contains(k.Versions, version) }

// Origin is where an object's JSON comes from.
type Origin int

const (
	// Manifest JSON was written by people: nothing has checked it.
	Manifest Origin = iota
	// Admission JSON comes from the API server, which decoded it into the kind's type
	// first (and pruned custom resources to their schema).
	Admission
)

// Decode reads an object of the kind. Every member must be one the kind's schema names,
// spelt as Kubernetes JSON spells it: a manifest is checked whole against the kind's API
// type; the spec of an Istio policy, and a guardrail, are checked from either origin,
// since what they hold is what the engine judges and a custom resource is only as pruned
// as its installed CRD. Built-in kinds under admission are not checked again: the API
// server decoded them into the same types, and a Pod is read only as far as the rules
// need, on the hottest path meshguard serves.
func (k *Kind) Decode(data []byte, from Origin) (metav1.Object, error) {
	if from == Manifest {
		if err := strictDecode(data, k.typed()); err != nil {
			return nil, err
		}
	}
	return k.decode(data)
}

// String names the kind as kubectl does: Kind.group, or Kind for the core group.
func (k *Kind) String() string {
	if k.Group == "" {
		return k.Kind
	}
	return k.Kind + "." + k.Group
}
