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

	Deny = mesh.Deny
	Warn = mesh.Warn
	Off  = mesh.Off

	ProxyUnknown       = mesh.ProxyUnknown
	ProxyPresent       = mesh.ProxyPresent
	ProxyAbsent        = mesh.ProxyAbsent
	ProxyContainerName = mesh.ProxyContainerName

	DefaultRootNamespace = mesh.DefaultRootNamespace
)

var (
	NewSnapshot      = mesh.NewSnapshot
	IsProxyContainer = mesh.IsProxyContainer
	KindOf           = mesh.KindOf
	Terminating      = mesh.Terminating
	Selects          = mesh.Selects
	WithNameLabel    = mesh.WithNameLabel
	RootNamespace    = mesh.RootNamespace
	MergeGuardrails  = mesh.MergeGuardrails
	Selected         = mesh.Selected
)

// OldestFirst is mesh.OldestFirst.
func OldestFirst[T metav1.Object](items []T) []T { return mesh.OldestFirst(items) }
