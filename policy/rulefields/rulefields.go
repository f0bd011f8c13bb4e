// Package rulefields decides what each field of an AuthorizationPolicy rule means: one row
// per request attribute, per field of a source or an operation, and per `when` key Istio
// knows. It names the attribute a field reads, how Envoy matches its values, whether only
// mTLS or only HTTP carries it, and what istiod sends ztunnel of it. Every list of fields
// meshguard's engine uses is derived from these rows; the package imports only Istio's API.
package rulefields

import (
	"net/netip"
	"regexp"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// Attributes of a request, by the names of Istio's `when` keys. The fields of a source and
// an operation read the same attributes.
const (
	RequestPrincipal = "request.auth.principal"
	PeerPrincipal    = "source.principal"
	Namespace        = "source.namespace"
	ServiceAccount   = "source.serviceAccount"
	TrustDomain      = "source.trustDomain"
	SourceIP         = "source.ip"
	RemoteIP         = "remote.ip"
	DestinationIP    = "destination.ip"
	Host             = "request.host"
	Port             = "destination.port"
	Method           = "request.method"
	Path             = "request.path"
)

// Attribute is what a request attribute is to Envoy's RBAC filter.
type Attribute struct {
	// Peer: set by mTLS only; a caller without it has none.
	Peer bool
	// HTTPOnly: carried by HTTP requests only; a sidecar serving TCP never matches it.
	HTTPOnly bool
	// Always: every request has it; it is never absent.
	Always bool
	Match  Match
}

// Match is how Envoy matches a value of a policy against the attribute, as istiod
// generates the matcher.
type Match int

const (
	// MatchString: exact, prefix "abc*", suffix "*abc", or "*" for any value present.
	MatchString Match = iota
	// MatchAddress: an address, or a CIDR range.
	MatchAddress
	// MatchHost: as MatchString, ignoring case.
	MatchHost
	// MatchPath: as MatchString on the path without its query or fragment, and path
	// templates ({*} a segment, {**} the rest).
	MatchPath
)

// attributes are the attributes with a name of their own; Of gives the others
// (a header, a claim).
var attributes = map[string]Attribute{
	PeerPrincipal:            {Peer: true},
	Namespace:                {Peer: true},
	ServiceAccount:           {Peer: true},
	TrustDomain:              {Peer: true},
	RequestPrincipal:         {HTTPOnly: true},
	"request.auth.audiences": {HTTPOnly: true},
	"request.auth.presenter": {HTTPOnly: true},
	SourceIP:                 {Always: true, Match: MatchAddress},
	RemoteIP:                 {Always: true, Match: MatchAddress},
	DestinationIP:            {Always: true, Match: MatchAddress},
	Port:                     {Always: true},
	Host:                     {HTTPOnly: true, Always: true, Match: MatchHost},
	Method:                   {HTTPOnly: true, Always: true},
	Path:                     {HTTPOnly: true, Always: true, Match: MatchPath},
	"connection.sni":         {},
}

// Of is the row of an attribute: request headers and token claims are HTTP's, and a
// request may lack them.
func Of(name string) Attribute {
	if a, ok := attributes[name]; ok {
		return a
	}
	return Attribute{HTTPOnly: strings.HasPrefix(name, "request."), Match: MatchString}
}

// IsJWT tells whether an attribute, or a `when` key, reads the validated token.
func IsJWT(key string) bool { return strings.HasPrefix(key, "request.auth.") }

// Ztunnel is what istiod sends ztunnel of a field or `when` key of a rule
// (handleRule and l4WhenAttributes in istiod's
// pilot/pkg/serviceregistry/ambient/authorization.go).
type Ztunnel int

const (
	// ZtunnelL4: sent, and matched on the connection.
	ZtunnelL4 Ztunnel = iota
	// ZtunnelHTTP: an HTTP field: an ALLOW rule naming it is dropped, a DENY rule with a
	// clause made only of such fields is skipped, and the other DENY rules lose it; the
	// policy's status says so.
	ZtunnelHTTP
	// ZtunnelHTTPSilent: as ZtunnelHTTP, with no status: a `when` key sidecars match on
	// the connection.
	ZtunnelHTTPSilent
	// ZtunnelUnsent: never sent, with no status: a source naming only such fields arrives
	// as an empty match, which holds for no connection.
	ZtunnelUnsent
)

// HTTPLevel tells whether ztunnel treats the field as HTTP's.
func (z Ztunnel) HTTPLevel() bool { return z == ZtunnelHTTP || z == ZtunnelHTTPSilent }

// Field is a field of a rule's sources (T Source) or operations (T Operation): its JSON
// names, positive and negative, the attribute it reads, what ztunnel gets of it, and its
// values.
type Field[T any] struct {
	Name, Not, Attr   string
	Ztunnel           Ztunnel
	Values, NotValues func(T) []string
}

// Set tells whether entry gives the field values, positive or negative.
func (f Field[T]) Set(entry T) bool { return len(f.Values(entry))+len(f.NotValues(entry)) > 0 }

// Source and Operation are the fields of a rule's sources and operations.
var (
	Source = []Field[*securityv1beta1.Source]{
		{"principals", "notPrincipals", PeerPrincipal, ZtunnelL4, (*securityv1beta1.Source).GetPrincipals, (*securityv1beta1.Source).GetNotPrincipals},
		{"requestPrincipals", "notRequestPrincipals", RequestPrincipal, ZtunnelHTTP, (*securityv1beta1.Source).GetRequestPrincipals, (*securityv1beta1.Source).GetNotRequestPrincipals},
		{"namespaces", "notNamespaces", Namespace, ZtunnelL4, (*securityv1beta1.Source).GetNamespaces, (*securityv1beta1.Source).GetNotNamespaces},
		{"serviceAccounts", "notServiceAccounts", ServiceAccount, ZtunnelL4, (*securityv1beta1.Source).GetServiceAccounts, (*securityv1beta1.Source).GetNotServiceAccounts},
		{"trustDomains", "notTrustDomains", TrustDomain, ZtunnelUnsent, (*securityv1beta1.Source).GetTrustDomains, (*securityv1beta1.Source).GetNotTrustDomains},
		{"ipBlocks", "notIpBlocks", SourceIP, ZtunnelL4, (*securityv1beta1.Source).GetIpBlocks, (*securityv1beta1.Source).GetNotIpBlocks},
		{"remoteIpBlocks", "notRemoteIpBlocks", RemoteIP, ZtunnelHTTP, (*securityv1beta1.Source).GetRemoteIpBlocks, (*securityv1beta1.Source).GetNotRemoteIpBlocks},
	}
	Operation = []Field[*securityv1beta1.Operation]{
		{"hosts", "notHosts", Host, ZtunnelHTTP, (*securityv1beta1.Operation).GetHosts, (*securityv1beta1.Operation).GetNotHosts},
		{"ports", "notPorts", Port, ZtunnelL4, (*securityv1beta1.Operation).GetPorts, (*securityv1beta1.Operation).GetNotPorts},
		{"methods", "notMethods", Method, ZtunnelHTTP, (*securityv1beta1.Operation).GetMethods, (*securityv1beta1.Operation).GetNotMethods},
		{"paths", "notPaths", Path, ZtunnelHTTP, (*securityv1beta1.Operation).GetPaths, (*securityv1beta1.Operation).GetNotPaths},
	}
)

// PeerAttributes are the attributes mTLS alone fills: a caller without it has none.
var PeerAttributes = func() []string {
	var out []string
	for _, f := range Source {
		if Of(f.Attr).Peer {
			out = append(out, f.Attr)
		}
	}
	return out
}()

// whenKeys are the `when` keys Istio knows by name (pkg/config/security
// ValidateAttribute), and what ztunnel gets of each; WhenKey adds the keys of a header, a
// claim and Envoy's experimental filters.
var whenKeys = map[string]Ztunnel{
	SourceIP: ZtunnelL4, RemoteIP: ZtunnelHTTPSilent,
	Namespace: ZtunnelL4, ServiceAccount: ZtunnelHTTPSilent, PeerPrincipal: ZtunnelL4, TrustDomain: ZtunnelHTTPSilent,
	RequestPrincipal: ZtunnelHTTP, "request.auth.audiences": ZtunnelHTTP, "request.auth.presenter": ZtunnelHTTP,
	DestinationIP: ZtunnelL4, Port: ZtunnelL4, "connection.sni": ZtunnelHTTPSilent,
}

var (
	headerKey = regexp.MustCompile(`^request\.headers\[[^\[\]]+\]$`)
	claimKey  = regexp.MustCompile(`^request\.auth\.claims(\[[^\[\]]+\])+$`)
)

// WhenKey is the row of a `when` key: what ztunnel gets of it, and whether Istio knows it
// (a rule with a key it does not know is skipped). ztunnel takes an unknown key as HTTP's.
func WhenKey(k string) (z Ztunnel, known bool) {
	if z, ok := whenKeys[k]; ok {
		return z, true
	}
	known = headerKey.MatchString(k) || claimKey.MatchString(k) || strings.HasPrefix(k, "experimental.envoy.filters.")
	return ZtunnelHTTP, known
}

// KnownWhenKey tells whether Istio knows a `when` key.
func KnownWhenKey(k string) bool {
	_, known := WhenKey(k)
	return known
}

// ZtunnelOf is what ztunnel gets of a `when` key.
func ZtunnelOf(key string) Ztunnel {
	z, _ := WhenKey(key)
	return z
}

// setWhere tells whether entry gives values to a field of fields that want accepts.
func setWhere[T any](fields []Field[T], entry T, want func(Field[T]) bool) bool {
	for _, f := range fields {
		if want(f) && f.Set(entry) {
			return true
		}
	}
	return false
}

// fieldsWhere tells whether a rule gives values to a source or operation field that
// fieldWants accepts, or has a `when` key that keyWants accepts.
func fieldsWhere(r *securityv1beta1.Rule, fieldWants func(attr string, z Ztunnel) bool, keyWants func(key string) bool) bool {
	for _, f := range r.From {
		if s := f.GetSource(); s != nil && setWhere(Source, s, func(f Field[*securityv1beta1.Source]) bool { return fieldWants(f.Attr, f.Ztunnel) }) {
			return true
		}
	}
	for _, t := range r.To {
		if o := t.GetOperation(); o != nil && setWhere(Operation, o, func(f Field[*securityv1beta1.Operation]) bool { return fieldWants(f.Attr, f.Ztunnel) }) {
			return true
		}
	}
	for _, w := range r.When {
		if keyWants(w.Key) {
			return true
		}
	}
	return false
}

// UsesHTTP tells whether a rule matches on attributes only HTTP carries.
func UsesHTTP(r *securityv1beta1.Rule) bool {
	return fieldsWhere(r,
		func(attr string, _ Ztunnel) bool { return Of(attr).HTTPOnly },
		func(key string) bool { return Of(key).HTTPOnly })
}

// L4Source and L4Operation tell whether a source or operation names a field ztunnel
// enforces; HTTPSource and HTTPOperation, a field istiod flags as HTTP-level for it.
func L4Source(s *securityv1beta1.Source) bool {
	return setWhere(Source, s, func(f Field[*securityv1beta1.Source]) bool { return f.Ztunnel == ZtunnelL4 })
}

func L4Operation(o *securityv1beta1.Operation) bool {
	return setWhere(Operation, o, func(f Field[*securityv1beta1.Operation]) bool { return f.Ztunnel == ZtunnelL4 })
}

func HTTPSource(s *securityv1beta1.Source) bool {
	return setWhere(Source, s, func(f Field[*securityv1beta1.Source]) bool { return f.Ztunnel.HTTPLevel() })
}

func HTTPOperation(o *securityv1beta1.Operation) bool {
	return setWhere(Operation, o, func(f Field[*securityv1beta1.Operation]) bool { return f.Ztunnel.HTTPLevel() })
}

// UnsentSource tells whether a source names a field istiod never sends ztunnel.
func UnsentSource(s *securityv1beta1.Source) bool {
	return setWhere(Source, s, func(f Field[*securityv1beta1.Source]) bool { return f.Ztunnel == ZtunnelUnsent })
}

// HTTPLevel tells whether a rule names any field or when key ztunnel cannot enforce.
func HTTPLevel(r *securityv1beta1.Rule) bool {
	return fieldsWhere(r,
		func(_ string, z Ztunnel) bool { return z.HTTPLevel() },
		func(key string) bool { return ZtunnelOf(key).HTTPLevel() })
}

// Matches is the match Envoy makes of the matcher istiod generates for a value of a
// policy, the one place every rule and explain match by: exact, prefix "abc*", suffix
// "*abc", or "*" for any value present; hosts ignoring case; paths without their query or
// fragment, and path templates ({*} a segment, {**} the rest); addresses by CIDR range.
func (m Match) Matches(v, pattern string) bool {
	if v == "" {
		return false
	}
	switch m {
	case MatchAddress:
		return IPMatches(v, pattern)
	case MatchHost:
		v, pattern = strings.ToLower(v), strings.ToLower(pattern)
	case MatchPath:
		v, _, _ = strings.Cut(v, "?")
		v, _, _ = strings.Cut(v, "#")
		if IsPathTemplate(pattern) {
			return TemplateMatches(v, pattern)
		}
	}
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(v, pattern[1:])
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(v, strings.TrimSuffix(pattern, "*"))
	}
	return v == pattern
}

// IPMatches tells whether address v is in the range of pattern, an address or a CIDR range.
// A value that is no address (the engine's "other address") is in 0.0.0.0/0 and ::/0 only.
func IPMatches(v, pattern string) bool {
	if pattern == "0.0.0.0/0" || pattern == "::/0" {
		return true
	}
	addr, err := netip.ParseAddr(v)
	if err != nil {
		return v == pattern
	}
	if prefix, err := netip.ParsePrefix(pattern); err == nil {
		return prefix.Contains(addr)
	}
	p, err := netip.ParseAddr(pattern)
	return err == nil && p == addr
}

// IsPathTemplate tells whether a path pattern is a template: {*} or {**} segments.
func IsPathTemplate(p string) bool { return strings.Contains(p, "{*}") || strings.Contains(p, "{**}") }

// TemplateMatches is Envoy's uri_template match: {*} matches one segment, {**} the rest of
// the path, zero segments or more.
func TemplateMatches(path, template string) bool {
	segments, want := strings.Split(path, "/"), strings.Split(template, "/")
	for i, w := range want {
		switch {
		case w == "{**}":
			return i < len(segments)
		case i >= len(segments):
			return false
		case w == "{*}":
			if segments[i] == "" {
				return false
			}
		case w != segments[i]:
			return false
		}
	}
	return len(segments) == len(want)
}
