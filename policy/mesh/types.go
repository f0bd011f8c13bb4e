// Package mesh is meshguard's model of the mesh a change is judged in: the objects Istio
// and Kubernetes read (policies, workloads, Services, gateways, namespaces), a State that
// lists them per namespace, oldest first, and the guardrails in force in each namespace.
// It knows nothing of how proxies enforce policies, nor of rules.
package mesh

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
	// Memo is what reviews worked out of the workload that only its labels and its
	// namespace's policies and labels decide, for the reviews after them: a mesh-wide
	// policy's review then does not read again the labels of 100,000 Pods. Only the engine
	// reads and writes it.
	Memo atomic.Value
	_    noCopy
}

// noCopy has go vet flag a copied Workload (copylocks): a copy would share its Memo.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

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

// SameObject tells whether two objects are the same resource.
func SameObject(a, b metav1.Object) bool {
	return a.GetName() == b.GetName() && a.GetNamespace() == b.GetNamespace() && KindOf(a) == KindOf(b)
}

// QuoteList renders values for messages.
func QuoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = `"` + v + `"`
	}
	return "[" + strings.Join(q, ", ") + "]"
}
