package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
)

// The model of the mesh the engine judges in (policy/mesh), under the names the front
// doors know it by.
type (
	RequestAuthentication = mesh.RequestAuthentication
	AuthorizationPolicy   = mesh.AuthorizationPolicy
	PeerAuthentication    = mesh.PeerAuthentication
	MeshGuardrail         = mesh.MeshGuardrail
	Gateway               = mesh.Gateway
	GatewayClass          = mesh.GatewayClass
	ServiceEntry          = mesh.ServiceEntry
	HTTPRoute             = mesh.HTTPRoute
	Action                = mesh.Action
	Workload              = mesh.Workload
	ProxyContainer        = mesh.ProxyContainer
	State                 = mesh.State
	Snapshot              = mesh.Snapshot
	PolicyMemo            = mesh.Memo
	Settings              = mesh.Settings
	IssuerList            = mesh.IssuerList
	Coverage              = mesh.Coverage
)

const (
	KindRequestAuthentication = mesh.KindRequestAuthentication
	KindAuthorizationPolicy   = mesh.KindAuthorizationPolicy
	KindPeerAuthentication    = mesh.KindPeerAuthentication
	KindPod                   = mesh.KindPod
	KindService               = mesh.KindService
	KindNamespace             = mesh.KindNamespace
	KindGateway               = mesh.KindGateway
	KindGatewayClass          = mesh.KindGatewayClass
	KindServiceEntry          = mesh.KindServiceEntry
	KindHTTPRoute             = mesh.KindHTTPRoute

	DataplaneModeLabel             = mesh.DataplaneModeLabel
	AmbientRedirectionAnnotation   = mesh.AmbientRedirectionAnnotation
	BypassInboundCaptureAnnotation = mesh.BypassInboundCaptureAnnotation

	Deny = mesh.Deny
	Warn = mesh.Warn
	Off  = mesh.Off

	ProxyUnknown       = mesh.ProxyUnknown
	ProxyPresent       = mesh.ProxyPresent
	ProxyAbsent        = mesh.ProxyAbsent
	ProxyContainerName = mesh.ProxyContainerName

	DefaultRootNamespace = mesh.DefaultRootNamespace
)

// The model's functions, as functions rather than variables: no state, and calls the
// compiler inlines (Selects runs for every policy and workload pair).

func NewSnapshot() *Snapshot                   { return mesh.NewSnapshot() }
func IsProxyContainer(name, image string) bool { return mesh.IsProxyContainer(name, image) }
func KindOf(o metav1.Object) string            { return mesh.KindOf(o) }
func Terminating(o metav1.Object) bool         { return mesh.Terminating(o) }
func Selects(selector, workloadLabels map[string]string) bool {
	return mesh.Selects(selector, workloadLabels)
}
func WithNameLabel(ns string, l map[string]string) map[string]string {
	return mesh.WithNameLabel(ns, l)
}
func RootNamespace(rails []*MeshGuardrail) string { return mesh.RootNamespace(rails) }
func MergeGuardrails(guardrails []*MeshGuardrail, namespace string, nsLabels map[string]string) Settings {
	return mesh.MergeGuardrails(guardrails, namespace, nsLabels)
}
func Selected(st State, o metav1.Object) []*Workload { return mesh.Selected(st, o) }

// OldestFirst is mesh.OldestFirst.
func OldestFirst[T metav1.Object](items []T) []T { return mesh.OldestFirst(items) }
