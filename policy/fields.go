package policy

import (
	"regexp"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// What each field of an AuthorizationPolicy rule means is decided here, in one row per
// request attribute, per field of a source or an operation, and per `when` key Istio
// knows: the attribute it reads, how its values match, whether only mTLS or only HTTP
// carries it, and what istiod sends of it to ztunnel. Every list of fields the evaluator,
// the data plane's translations and the rules use is derived from these rows.

// Attributes of a request, by the names of Istio's `when` keys. The fields of a source and
// an operation read the same attributes.
const (
	attrRequestPrincipal = "request.auth.principal"
	attrPeerPrincipal    = "source.principal"
	attrNamespace        = "source.namespace"
	attrServiceAccount   = "source.serviceAccount"
	attrTrustDomain      = "source.trustDomain"
	attrSourceIP         = "source.ip"
	attrRemoteIP         = "remote.ip"
	attrDestinationIP    = "destination.ip"
	attrHost             = "request.host"
	attrPort             = "destination.port"
	attrMethod           = "request.method"
	attrPath             = "request.path"
)

// attribute is what a request attribute is to Envoy's RBAC filter.
type attribute struct {
	// peer: set by mTLS only; a caller without it has none.
	peer bool
	// httpOnly: carried by HTTP requests only; a sidecar serving TCP never matches it.
	httpOnly bool
	// always: every request has it; it is never absent.
	always bool
	match  valueMatch
}

// valueMatch is how Envoy matches a value of a policy against the attribute, as istiod
// generates the matcher.
type valueMatch int

const (
	// matchString: exact, prefix "abc*", suffix "*abc", or "*" for any value present.
	matchString valueMatch = iota
	// matchAddress: an address, or a CIDR range.
	matchAddress
	// matchHost: as matchString, ignoring case.
	matchHost
	// matchPath: as matchString on the path without its query or fragment, and path
	// templates ({*} a segment, {**} the rest).
	matchPath
)

// attributes are the attributes with a name of their own; attributeOf gives the others
// (a header, a claim).
var attributes = map[string]attribute{
	attrPeerPrincipal:        {peer: true},
	attrNamespace:            {peer: true},
	attrServiceAccount:       {peer: true},
	attrTrustDomain:          {peer: true},
	attrRequestPrincipal:     {httpOnly: true},
	"request.auth.audiences": {httpOnly: true},
	"request.auth.presenter": {httpOnly: true},
	attrSourceIP:             {always: true, match: matchAddress},
	attrRemoteIP:             {always: true, match: matchAddress},
	attrDestinationIP:        {always: true, match: matchAddress},
	attrPort:                 {always: true},
	attrHost:                 {httpOnly: true, always: true, match: matchHost},
	attrMethod:               {httpOnly: true, always: true},
	attrPath:                 {httpOnly: true, always: true, match: matchPath},
	"connection.sni":         {},
}

// attributeOf is the row of an attribute: request headers and token claims are HTTP's,
// and a request may lack them.
func attributeOf(name string) attribute {
	if a, ok := attributes[name]; ok {
		return a
	}
	return attribute{httpOnly: strings.HasPrefix(name, "request."), match: matchString}
}

// isJWTKey tells whether an attribute, or a `when` key, reads the validated token.
func isJWTKey(key string) bool { return strings.HasPrefix(key, "request.auth.") }

// ztunnelReading is what istiod sends ztunnel of a field or `when` key of a rule
// (handleRule and l4WhenAttributes in istiod's
// pilot/pkg/serviceregistry/ambient/authorization.go).
type ztunnelReading int

const (
	// ztunnelL4: sent, and matched on the connection.
	ztunnelL4 ztunnelReading = iota
	// ztunnelHTTP: an HTTP field: an ALLOW rule naming it is dropped, a DENY rule with a
	// clause made only of such fields is skipped, and the other DENY rules lose it; the
	// policy's status says so.
	ztunnelHTTP
	// ztunnelHTTPSilent: as ztunnelHTTP, with no status: a `when` key sidecars match on
	// the connection.
	ztunnelHTTPSilent
	// ztunnelUnsent: never sent, with no status: a source naming only such fields arrives
	// as an empty match, which holds for no connection.
	ztunnelUnsent
)

// httpLevel tells whether ztunnel treats the field as HTTP's.
func (z ztunnelReading) httpLevel() bool { return z == ztunnelHTTP || z == ztunnelHTTPSilent }

// ruleField is a field of a rule's sources (T Source) or operations (T Operation): its JSON
// names, positive and negative, the attribute it reads, what ztunnel gets of it, and its
// values.
type ruleField[T any] struct {
	name, not, attr   string
	ztunnel           ztunnelReading
	values, notValues func(T) []string
}

// set tells whether entry gives the field values, positive or negative.
func (f ruleField[T]) set(entry T) bool { return len(f.values(entry))+len(f.notValues(entry)) > 0 }

// sourceFields and operationFields are the fields of a rule's sources and operations.
var (
	sourceFields = []ruleField[*securityv1beta1.Source]{
		{"principals", "notPrincipals", attrPeerPrincipal, ztunnelL4, (*securityv1beta1.Source).GetPrincipals, (*securityv1beta1.Source).GetNotPrincipals},
		{"requestPrincipals", "notRequestPrincipals", attrRequestPrincipal, ztunnelHTTP, (*securityv1beta1.Source).GetRequestPrincipals, (*securityv1beta1.Source).GetNotRequestPrincipals},
		{"namespaces", "notNamespaces", attrNamespace, ztunnelL4, (*securityv1beta1.Source).GetNamespaces, (*securityv1beta1.Source).GetNotNamespaces},
		{"serviceAccounts", "notServiceAccounts", attrServiceAccount, ztunnelL4, (*securityv1beta1.Source).GetServiceAccounts, (*securityv1beta1.Source).GetNotServiceAccounts},
		{"trustDomains", "notTrustDomains", attrTrustDomain, ztunnelUnsent, (*securityv1beta1.Source).GetTrustDomains, (*securityv1beta1.Source).GetNotTrustDomains},
		{"ipBlocks", "notIpBlocks", attrSourceIP, ztunnelL4, (*securityv1beta1.Source).GetIpBlocks, (*securityv1beta1.Source).GetNotIpBlocks},
		{"remoteIpBlocks", "notRemoteIpBlocks", attrRemoteIP, ztunnelHTTP, (*securityv1beta1.Source).GetRemoteIpBlocks, (*securityv1beta1.Source).GetNotRemoteIpBlocks},
	}
	operationFields = []ruleField[*securityv1beta1.Operation]{
		{"hosts", "notHosts", attrHost, ztunnelHTTP, (*securityv1beta1.Operation).GetHosts, (*securityv1beta1.Operation).GetNotHosts},
		{"ports", "notPorts", attrPort, ztunnelL4, (*securityv1beta1.Operation).GetPorts, (*securityv1beta1.Operation).GetNotPorts},
		{"methods", "notMethods", attrMethod, ztunnelHTTP, (*securityv1beta1.Operation).GetMethods, (*securityv1beta1.Operation).GetNotMethods},
		{"paths", "notPaths", attrPath, ztunnelHTTP, (*securityv1beta1.Operation).GetPaths, (*securityv1beta1.Operation).GetNotPaths},
	}
)

// peerAttributes are the attributes mTLS alone fills: a caller without it has none.
var peerAttributes = func() []string {
	var out []string
	for _, f := range sourceFields {
		if attributeOf(f.attr).peer {
			out = append(out, f.attr)
		}
	}
	return out
}()

// whenKeys are the `when` keys Istio knows by name (pkg/config/security
// ValidateAttribute), and what ztunnel gets of each; whenKey adds the keys of a header, a
// claim and Envoy's experimental filters.
var whenKeys = map[string]ztunnelReading{
	attrSourceIP: ztunnelL4, attrRemoteIP: ztunnelHTTPSilent,
	attrNamespace: ztunnelL4, attrServiceAccount: ztunnelHTTPSilent, attrPeerPrincipal: ztunnelL4, attrTrustDomain: ztunnelHTTPSilent,
	attrRequestPrincipal: ztunnelHTTP, "request.auth.audiences": ztunnelHTTP, "request.auth.presenter": ztunnelHTTP,
	attrDestinationIP: ztunnelL4, attrPort: ztunnelL4, "connection.sni": ztunnelHTTPSilent,
}

var (
	headerKey = regexp.MustCompile(`^request\.headers\[[^\[\]]+\]$`)
	claimKey  = regexp.MustCompile(`^request\.auth\.claims(\[[^\[\]]+\])+$`)
)

// whenKey is the row of a `when` key: what ztunnel gets of it, and whether Istio knows it
// (a rule with a key it does not know is skipped). ztunnel takes an unknown key as HTTP's.
func whenKey(k string) (z ztunnelReading, known bool) {
	if z, ok := whenKeys[k]; ok {
		return z, true
	}
	known = headerKey.MatchString(k) || claimKey.MatchString(k) || strings.HasPrefix(k, "experimental.envoy.filters.")
	return ztunnelHTTP, known
}

func knownWhenKey(k string) bool {
	_, known := whenKey(k)
	return known
}

// ztunnelReadingOf is what ztunnel gets of a `when` key.
func ztunnelReadingOf(key string) ztunnelReading {
	z, _ := whenKey(key)
	return z
}

// setWhere tells whether entry gives values to a field of fields that want accepts.
func setWhere[T any](fields []ruleField[T], entry T, want func(ruleField[T]) bool) bool {
	for _, f := range fields {
		if want(f) && f.set(entry) {
			return true
		}
	}
	return false
}

// fieldsWhere tells whether a rule gives values to a source or operation field that
// fieldWants accepts, or has a `when` key that keyWants accepts.
func fieldsWhere(r *apRule, fieldWants func(attr string, z ztunnelReading) bool, keyWants func(key string) bool) bool {
	for _, f := range r.From {
		if s := f.GetSource(); s != nil && setWhere(sourceFields, s, func(f ruleField[*securityv1beta1.Source]) bool { return fieldWants(f.attr, f.ztunnel) }) {
			return true
		}
	}
	for _, t := range r.To {
		if o := t.GetOperation(); o != nil && setWhere(operationFields, o, func(f ruleField[*securityv1beta1.Operation]) bool { return fieldWants(f.attr, f.ztunnel) }) {
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

// usesHTTPFields tells whether a rule matches on attributes only HTTP carries.
func usesHTTPFields(r *apRule) bool {
	return fieldsWhere(r,
		func(attr string, _ ztunnelReading) bool { return attributeOf(attr).httpOnly },
		func(key string) bool { return attributeOf(key).httpOnly })
}

// l4Source and l4Operation tell whether a source or operation names a field ztunnel
// enforces; httpSource and httpOperation, a field istiod flags as HTTP-level for it.
func l4Source(s *securityv1beta1.Source) bool {
	return setWhere(sourceFields, s, func(f ruleField[*securityv1beta1.Source]) bool { return f.ztunnel == ztunnelL4 })
}

func l4Operation(o *securityv1beta1.Operation) bool {
	return setWhere(operationFields, o, func(f ruleField[*securityv1beta1.Operation]) bool { return f.ztunnel == ztunnelL4 })
}

func httpSource(s *securityv1beta1.Source) bool {
	return setWhere(sourceFields, s, func(f ruleField[*securityv1beta1.Source]) bool { return f.ztunnel.httpLevel() })
}

func httpOperation(o *securityv1beta1.Operation) bool {
	return setWhere(operationFields, o, func(f ruleField[*securityv1beta1.Operation]) bool { return f.ztunnel.httpLevel() })
}

// unsentSource tells whether a source names a field istiod never sends ztunnel.
func unsentSource(s *securityv1beta1.Source) bool {
	return setWhere(sourceFields, s, func(f ruleField[*securityv1beta1.Source]) bool { return f.ztunnel == ztunnelUnsent })
}

// httpLevel tells whether a rule names any field or when key ztunnel cannot enforce.
func httpLevel(r *apRule) bool {
	return fieldsWhere(r,
		func(_ string, z ztunnelReading) bool { return z.httpLevel() },
		func(key string) bool { return ztunnelReadingOf(key).httpLevel() })
}

// ztunnelReading is what ztunnel gets of the field of the condition.
func (c condition) ztunnelReading() ztunnelReading {
	switch c.at.list {
	case 'f':
		return sourceFields[c.at.field].ztunnel
	case 't':
		return operationFields[c.at.field].ztunnel
	}
	return ztunnelReadingOf(c.attr)
}
