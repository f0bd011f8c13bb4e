// Package policy is meshguard's engine: it judges Istio security configuration against the
// state around it and returns findings. It is pure: no I/O, no Kubernetes client, no globals.
// The webhook feeds it the live cluster, `meshguard check` a bundle of manifests.
package policy

import (
	"strings"
	"sync/atomic"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/api/v1alpha1"
)

// The Istio security kinds meshguard judges. Both security.istio.io/v1 and v1beta1 share one
// spec, so the engine works on the v1 types.
type (
	RequestAuthentication = securityv1.RequestAuthentication
	AuthorizationPolicy   = securityv1.AuthorizationPolicy
	PeerAuthentication    = securityv1.PeerAuthentication
	MeshGuardrail         = v1alpha1.MeshGuardrail
	// Gateway is a Gateway API gateway: an ingress, or a waypoint (class istio-waypoint).
	Gateway = gatewayv1.Gateway
	// GatewayClass is a Gateway API class; istio-waypoint is the waypoints'.
	GatewayClass = gatewayv1.GatewayClass
	// ServiceEntry adds a service to Istio's registry; an egress waypoint may serve it.
	ServiceEntry = networkingv1.ServiceEntry
	// HTTPRoute routes a gateway's requests to Services.
	HTTPRoute = gatewayv1.HTTPRoute
)

// Kind names, as they appear in findings and manifests.
const (
	KindRequestAuthentication = "RequestAuthentication"
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindPeerAuthentication    = "PeerAuthentication"
	KindPod                   = "Pod"
	KindService               = "Service"
	KindNamespace             = "Namespace"
	KindGateway               = "Gateway"
	KindGatewayClass          = "GatewayClass"
	KindServiceEntry          = "ServiceEntry"
	KindHTTPRoute             = "HTTPRoute"
)

// Action is what a finding does to the change under review.
type Action = v1alpha1.RuleAction

const (
	Deny = v1alpha1.ActionDeny
	Warn = v1alpha1.ActionWarn
	Off  = v1alpha1.ActionOff
)

// Operation is the admission operation under review. Audit judges an object as it stands,
// as `meshguard check` does for every object of a bundle.
type Operation string

const (
	Audit  Operation = "AUDIT"
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
)

// Workload is what policies select: a Pod, or the pod template of a workload controller
// offline. Only metadata and the few spec facts rules need are kept, so that a cache of
// every Pod in a cluster stays small. The metadata is held by pointer: a webhook's views
// point at the Pods its cache stores instead of copying them, so it is read, never written
// (Cover copies it first).
type Workload struct {
	*metav1.ObjectMeta
	// Kind is Pod, or the controller kind (Deployment, CronJob, ...) owning a pod template.
	Kind string
	// HostNetwork Pods bypass the sidecar: no policy is enforced on them.
	HostNetwork bool
	// Virtual marks a stand-in for the workloads a selector was written for, used when no
	// real workload matches it (a bundle of policies only, or policies applied first).
	Virtual bool
	// ProxyContainer tells, where the spec was read (admission, manifests), whether the
	// workload runs Istio's proxy container: labels alone make no gateway.
	ProxyContainer ProxyContainer
	// kept is what reviews worked out of the workload that only its labels and its
	// namespace's policies and labels decide (keptFacts), for the reviews after them: a
	// mesh-wide policy's review then does not read again the labels of 100,000 Pods.
	kept atomic.Pointer[keptFacts]
}

// ProxyContainer is whether a workload runs Istio's proxy container, ProxyContainerName.
type ProxyContainer uint8

const (
	// ProxyUnknown: the workload was read as metadata (the cache's Pods).
	ProxyUnknown ProxyContainer = iota
	ProxyPresent
	ProxyAbsent
)

// ProxyContainerName is the container of Istio's proxy in the gateway and waypoint
// Deployments istiod and Istio's charts make.
const ProxyContainerName = "istio-proxy"

// IsProxyContainer tells whether a container is Istio's proxy: named so, of Istio's proxy
// image (proxyv2, from any registry, any tag or flavour), or of image "auto", which Istio's
// injector replaces with it (the charts' gateways).
func IsProxyContainer(name, image string) bool {
	if name != ProxyContainerName {
		return false
	}
	repository, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(repository, ":"); i > strings.LastIndex(repository, "/") {
		repository = repository[:i]
	}
	return image == "auto" || repository == "proxyv2" || strings.HasSuffix(repository, "/proxyv2")
}

// Finding is one thing a rule found.
type Finding struct {
	Rule   string `json:"rule"`   // stable ID, e.g. MG101
	Name   string `json:"name"`   // stable name, e.g. ra-missing-audiences
	Action Action `json:"action"` // deny or warn; "off" findings are never returned

	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	ObjectName string `json:"objectName"`
	// Object is the object the finding is about, for callers that map it back to a source.
	Object metav1.Object `json:"-"`

	Field   string `json:"field"`   // JSON path of the offending field, e.g. spec.jwtRules[0].audiences
	Message string `json:"message"` // what goes wrong at runtime: who gets in, or who is locked out
	Fix     string `json:"fix"`     // how to fix it

	// Suppressed is set where the object accepts the finding (SuppressAnnotationPrefix):
	// it is reported, and blocks nothing.
	Suppressed *Suppression `json:"suppressed,omitempty"`
}

// Suppression is why a finding was accepted on its object.
type Suppression struct {
	Reason string `json:"reason"`
}

// SuppressAnnotationPrefix, followed by a rule ID, is the annotation with which an
// object accepts that rule's findings on it; its value, the reason, is required. A warn
// finding is suppressed so; a deny finding only where a MeshGuardrail governing the
// namespace names the rule in spec.suppressible.
const SuppressAnnotationPrefix = "ignore.meshguard.io/"

// Rule is one entry of the catalog.
type Rule struct {
	ID      string
	Name    string
	Default Action
	// Kinds are the kinds of object the rule judges.
	Kinds []string
	// Summary says what the rule finds; Why, what happens at runtime if it is left.
	Summary string
	Why     string
	// Check returns the rule's findings for the object under review. A finding may carry
	// its own Action where the rule's default depends on what it found (MG104, MG302, ...).
	Check func(c *Context) []Finding
	// Label, on a rule that changes objects instead of judging them (MG501), returns the
	// labels a new workload lacks under the settings in force, and the guardrails that ask
	// for them (Engine.CoverageLabels).
	Label func(s Settings, w *Workload) (missing map[string]string, guardrails []string)
	// OnDelete rules also judge deletions; the others judge only what is created or kept.
	OnDelete bool
}

// judge adapts a check of one kind of object to Rule.Check.
func judge[T metav1.Object](check func(c *Context, o T) []Finding) func(*Context) []Finding {
	return func(c *Context) []Finding {
		if o, ok := c.Object.(T); ok {
			return check(c, o)
		}
		return nil
	}
}

// finding is a finding at field, with the rule's default action.
func finding(field, message, fix string) Finding {
	return Finding{Field: field, Message: message, Fix: fix}
}

// as sets the finding's action where the rule's default depends on what it found.
func (f Finding) as(a Action) Finding {
	f.Action = a
	return f
}

// KindOf names the kind of an object the engine knows: the Istio kind, the workload kind
// (Pod, Deployment, ...), or MeshGuardrail.
func KindOf(o metav1.Object) string {
	switch o := o.(type) {
	case *RequestAuthentication:
		return KindRequestAuthentication
	case *AuthorizationPolicy:
		return KindAuthorizationPolicy
	case *PeerAuthentication:
		return KindPeerAuthentication
	case *Workload:
		return o.Kind
	case *MeshGuardrail:
		return v1alpha1.Kind
	case *corev1.Service:
		return KindService
	case *corev1.Namespace:
		return KindNamespace
	case *Gateway:
		return KindGateway
	case *GatewayClass:
		return KindGatewayClass
	case *ServiceEntry:
		return KindServiceEntry
	case *HTTPRoute:
		return KindHTTPRoute
	}
	return ""
}

// sameObject tells whether two objects are the same resource.
func sameObject(a, b metav1.Object) bool {
	return a.GetName() == b.GetName() && a.GetNamespace() == b.GetNamespace() && KindOf(a) == KindOf(b)
}

// ref names an object for messages: Kind ns/name.
func ref(o metav1.Object) string {
	if o.GetNamespace() == "" {
		return KindOf(o) + " " + o.GetName()
	}
	return KindOf(o) + " " + o.GetNamespace() + "/" + o.GetName()
}

// quoteList renders values for messages.
func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = `"` + v + `"`
	}
	return "[" + strings.Join(q, ", ") + "]"
}
