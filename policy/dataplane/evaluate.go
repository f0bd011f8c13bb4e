// Package dataplane is what the proxies do with a class of request: the routes requests
// take to a workload and the proxies on each (sidecar, ztunnel, waypoint, gateway), the
// AuthorizationPolicies each receives, compiled into rules as istiod translates them for
// it, and Envoy's RBAC evaluation of them (CUSTOM, then DENY, then ALLOW); from these, a
// proxy's trace of one request (Explain's) and what protects a workload, worked out once
// per class of workloads and review (Memo). It reads the mesh model (which proxy takes a
// workload's traffic, where a policy applies) and the meaning of the rules' fields
// (rulefields); it knows no meshguard rule.
package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// The evaluator answers what Envoy's RBAC filters do with a class of request at one
// workload, as istiod translates its AuthorizationPolicies: CUSTOM first (its verdict is an
// external service's, unknown here, so it is left out), then DENY, then ALLOW. A request is
// denied if a DENY rule matches it; otherwise it is admitted if no ALLOW policy applies, or
// if a rule of any ALLOW policy matches it. A rule matches when its from, to and when all
// match; the entries of from and to are ORed, the fields of one entry ANDed, a positive
// field with its negative form alike; every when condition must hold. A policy in dry run
// enforces nothing, and a rule with a `when` key Istio does not know is skipped.

// request is one class of request: a value per attribute, "" where the request has none.
// Attributes no policy reads are left out.
type Request map[string]string

// AnyOther is a value no policy names: only wildcards match it.
const AnyOther = "\x00"

// AnyPath is a path no policy names: it matches "/*" and "*", nothing narrower.
const AnyPath = "/" + AnyOther

// Condition is one field of a rule: the attribute it reads, and its positive and negative
// values (either may be empty); At says where it is in the rule, for explanations.
type Condition struct {
	Attr              string
	Values, NotValues []string
	At                FieldRef
	Match             rulefields.Match
}

// NewCondition is the condition on attr of these values, at.
func NewCondition(attr string, values, notValues []string, at FieldRef) Condition {
	return Condition{attr, values, notValues, at, rulefields.Of(attr).Match}
}

// FieldRef is where a condition is in its rule: the entry of from (list 'f') or to ('t') and
// the index of its field in rulefields.Source or rulefields.Operation, or the index in when ('w').
type FieldRef struct {
	List         byte
	Entry, Field int
}

// Path names the field in the rule at rule, its negative form if negative:
// spec.rules[0].from[0].source.notPaths (from[0].source.notPaths where rule is nil).
func (f FieldRef) Path(rule *field.Path, negative bool) *field.Path {
	pick := func(name, not string) string {
		if negative {
			return not
		}
		return name
	}
	switch f.List {
	case 'f':
		return rule.Child("from").Index(f.Entry).Child("source", pick(rulefields.Source[f.Field].Name, rulefields.Source[f.Field].Not))
	case 't':
		return rule.Child("to").Index(f.Entry).Child("operation", pick(rulefields.Operation[f.Field].Name, rulefields.Operation[f.Field].Not))
	}
	return rule.Child("when").Index(f.Entry)
}

// conditions are the conditions of entry i of a from or to list (list 'f' or 't'), one per
// field set.
func conditions[T any](fields []rulefields.Field[T], list byte, i int, entry T) []Condition {
	set := 0
	for _, f := range fields {
		if f.Set(entry) {
			set++
		}
	}
	cs := make([]Condition, 0, set) // one allocation: a policy is compiled on every review
	for j, f := range fields {
		if f.Set(entry) {
			cs = append(cs, NewCondition(f.Attr, f.Values(entry), f.NotValues(entry), FieldRef{list, i, j}))
		}
	}
	return cs
}

// WrittenConditions are every condition of a rule as written, unknown when keys included:
// its from entries' fields, its to entries', then its when conditions.
func WrittenConditions(r *apRule) []Condition {
	var cs []Condition
	for k, f := range r.From {
		cs = append(cs, conditions(rulefields.Source, 'f', k, f.GetSource())...)
	}
	for k, o := range r.To {
		cs = append(cs, conditions(rulefields.Operation, 't', k, o.GetOperation())...)
	}
	for k, w := range r.When {
		cs = append(cs, NewCondition(w.Key, w.Values, w.NotValues, FieldRef{'w', k, 0}))
	}
	return cs
}

// Holds tells whether the condition holds for request r.
func (c Condition) Holds(r Request) bool {
	v := r[c.Attr]
	if v == "" {
		return c.HoldsFor(nil)
	}
	one := [1]string{v}
	return c.HoldsFor(one[:])
}

// HoldsFor tells whether the condition holds for an attribute of these values (a claim
// may have several): a positive condition if one of them matches, a negative one if none
// does. An attribute the request lacks matches no positive value and every negative one.
func (c Condition) HoldsFor(values []string) bool {
	matchesAny := func(patterns []string) bool {
		return slices.ContainsFunc(values, func(v string) bool {
			return slices.ContainsFunc(patterns, func(p string) bool { return c.Match.Matches(v, p) })
		})
	}
	return (len(c.Values) == 0 || matchesAny(c.Values)) && !matchesAny(c.NotValues)
}

// ValueMatches is the match Envoy makes of the matcher istiod generates for a value of a
// policy, the one place every rule and explain match by: exact, prefix "abc*", suffix
// "*abc", or "*" for any value present; hosts ignoring case; paths without their query or
// fragment, and path templates ({*} a segment, {**} the rest); addresses by CIDR range.
func ValueMatches(attr, v, pattern string) bool { return rulefields.Of(attr).Match.Matches(v, pattern) }

// compiledRule is an AuthorizationPolicy rule as conditions.
type Rule struct {
	From, To [][]Condition // entries, ORed; conditions of one entry, ANDed
	When     []Condition
}

// Matches tells whether the rule matches req: an entry of from, one of to, and every when
// condition.
func (r Rule) Matches(req Request) bool {
	return anyEntryHolds(r.From, req) && anyEntryHolds(r.To, req) && allHold(r.When, req)
}

func anyEntryHolds(entries [][]Condition, req Request) bool {
	return len(entries) == 0 || slices.ContainsFunc(entries, func(cs []Condition) bool { return allHold(cs, req) })
}

func allHold(cs []Condition, req Request) bool {
	for _, c := range cs {
		if !c.Holds(req) {
			return false
		}
	}
	return true
}

// CompileRule returns a rule's conditions; false for a rule Istio skips.
func CompileRule(namespace string, r *apRule) (Rule, bool) {
	out := Rule{From: make([][]Condition, 0, len(r.From)), To: make([][]Condition, 0, len(r.To))}
	for i, f := range r.From {
		out.From = append(out.From, qualifyServiceAccounts(namespace, conditions(rulefields.Source, 'f', i, f.GetSource())))
	}
	for i, t := range r.To {
		out.To = append(out.To, conditions(rulefields.Operation, 't', i, t.GetOperation()))
	}
	for i, w := range r.When {
		if !rulefields.KnownWhenKey(w.Key) {
			return Rule{}, false
		}
		out.When = append(out.When, NewCondition(w.Key, w.Values, w.NotValues, FieldRef{'w', i, 0}))
	}
	return out, true
}

// qualifyServiceAccounts names the namespace of each service account a condition names
// without one: the policy's, as istiod reads it.
func qualifyServiceAccounts(namespace string, cs []Condition) []Condition {
	qualify := func(names []string) []string {
		out := slices.Clone(names)
		for i, n := range out {
			if !strings.Contains(n, "/") {
				out[i] = namespace + "/" + n
			}
		}
		return out
	}
	for i, c := range cs {
		if c.Attr == rulefields.ServiceAccount {
			cs[i].Values, cs[i].NotValues = qualify(c.Values), qualify(c.NotValues)
		}
	}
	return cs
}

// enforcement is how the AuthorizationPolicies of one workload are enforced.
type Enforcement struct {
	Deny, Allow []Rule
	// AllowPolicies tells whether an ALLOW policy applies: then only what one of its rules
	// matches is admitted (an ALLOW policy without rules admits nothing).
	AllowPolicies bool
	// Plaintext tells whether callers without mTLS reach the workload (PeerAuthentication
	// not STRICT).
	Plaintext bool
}

// EnforcementOf is how a sidecar, a waypoint or a gateway enforces aps; plaintext tells
// whether callers without mTLS reach the workload.
func EnforcementOf(aps []*mesh.AuthorizationPolicy, plaintext bool) Enforcement {
	return EnforcementBy(aps, plaintext, false)
}

// EnforcementBy is EnforcementOf at a proxy that receives each rule as Receive says: ztunnel,
// or another.
func EnforcementBy(aps []*mesh.AuthorizationPolicy, plaintext, ztunnel bool) Enforcement {
	e := Enforcement{Plaintext: plaintext}
	for _, ap := range aps {
		if IsDryRun(ap) || !IsAllow(ap) && !IsDeny(ap) {
			continue
		}
		if IsAllow(ap) {
			e.AllowPolicies = true
		}
		for _, r := range ap.Spec.Rules {
			c, skipped := Receive(ztunnel, ap, r)
			switch {
			case skipped != "":
			case IsAllow(ap):
				e.Allow = append(e.Allow, c)
			default:
				e.Deny = append(e.Deny, c)
			}
		}
	}
	return e
}

// Why a proxy receives no rule of a policy.
const (
	unknownWhenKey  = "a when key Istio does not know: the rule is skipped"
	ztunnelNoCustom = "ztunnel is not sent CUSTOM policies"
)

// Receive is a rule of ap as a proxy receives it, or why it receives none: a sidecar, a
// waypoint or a gateway the rule as written, but for one with a when key Istio does not
// know; ztunnel no CUSTOM policy, and each rule as istiod translates it for ztunnel
// (ztunnelRule).
func Receive(ztunnel bool, ap *mesh.AuthorizationPolicy, r *apRule) (Rule, string) {
	if ztunnel && ap.Spec.Action == securityv1beta1.AuthorizationPolicy_CUSTOM {
		return Rule{}, ztunnelNoCustom
	}
	c, ok := CompileRule(ap.Namespace, r)
	if !ok {
		return Rule{}, unknownWhenKey
	}
	if ztunnel {
		var dropped string
		if c, dropped = ztunnelRule(ap, r, c); dropped != "" {
			return Rule{}, dropped
		}
	}
	return c, ""
}

// Decide is Envoy's RBAC decision, given what matched: a DENY rule denies; where ALLOW
// policies apply, a request no ALLOW rule matches is denied; then a matching CUSTOM rule
// leaves the verdict to its provider; else the request is allowed.
func Decide(denied, allowPolicies, allowed, custom bool) Verdict {
	switch {
	case denied, allowPolicies && !allowed:
		return VerdictDeny
	case custom:
		return VerdictUndetermined
	}
	return VerdictAllow
}

// Admits tells whether a request gets past the workload's DENY and ALLOW policies.
// CUSTOM policies are left out: their provider's verdict is not known here, and no
// CUSTOM match makes Decide deny.
func (e Enforcement) Admits(req Request) bool {
	matches := func(r Rule) bool { return r.Matches(req) }
	denied := slices.ContainsFunc(e.Deny, matches)
	allowed := !denied && e.AllowPolicies && slices.ContainsFunc(e.Allow, matches)
	return Decide(denied, e.AllowPolicies, allowed, false) != VerdictDeny
}

// MaxRequestClasses bounds the requests one question tries: the product of the values the
// policies of one workload name. Beyond it the question is left undecided.
const MaxRequestClasses = 4096

// attrUndecided marks the request that stands for all those the engine did not try: the
// policies name more than MaxRequestClasses combinations of values. It is read as an
// opening, so that padding a policy with values never makes a workload look protected.
const attrUndecided = "meshguard.undecided"

// undecidedRequest is a request the engine cannot rule out (see attrUndecided).
func undecidedRequest() Request { return Request{attrUndecided: "true"} }

// TokenlessOpening returns a request with no token that the workload admits, on a path
// no policy names and from a caller no policy names (without mTLS, or any workload of the
// mesh), or nil when every such request is turned away. Token-less requests admitted only
// on named paths or from named callers are exemptions made on purpose (a health check, the
// workloads of one namespace over STRICT mTLS). When the policies name too many values to
// try every class, it is undecidedRequest: the engine fails closed.
func (e Enforcement) TokenlessOpening() Request {
	return e.TokenlessOpeningWith(Request{rulefields.Path: AnyPath, rulefields.Host: AnyOther})
}

// TokenlessOpeningWith is TokenlessOpening among the requests with fixed's values.
func (e Enforcement) TokenlessOpeningWith(fixed Request) Request {
	found, decided := e.Find(fixed, true, e.AnonymousPeers(), e.Admits)
	if !decided {
		return undecidedRequest()
	}
	return found
}

// AnonymousPeers are the callers no policy names: one without mTLS (where mTLS is not
// STRICT), any workload of the mesh, and a workload of the mesh matching each pattern a
// policy gives that is not pinned to one namespace (pinnedIdentity): such a pattern
// names no caller in particular. cluster.local/* or tenant-* admits the workloads of
// namespaces any tenant may create.
func (e Enforcement) AnonymousPeers() []Request {
	out := []Request{genericPeer()}
	if e.Plaintext {
		out = []Request{{}, genericPeer()}
	}
	for _, pv := range e.peerValues() {
		if !pinnedIdentity(pv.attr, pv.pattern) {
			peer := genericPeer()
			peer[pv.attr] = pv.value
			out = append(out, peer)
		}
	}
	return out
}

// peerValue is a value worth trying for a peer attribute: one inside a pattern a policy
// gives it.
type peerValue struct{ attr, pattern, value string }

// peerValues are the values worth trying for peer attributes, each once, but "*".
func (e Enforcement) peerValues() []peerValue {
	var out []peerValue
	seen := map[[2]string]bool{}
	for _, c := range e.Conditions() {
		if !slices.Contains(rulefields.PeerAttributes, c.Attr) {
			continue
		}
		for _, p := range slices.Concat(c.Values, c.NotValues) {
			v := Representative(p)
			if v == "" || seen[[2]string{c.Attr, v}] {
				continue
			}
			seen[[2]string{c.Attr, v}] = true
			out = append(out, peerValue{c.Attr, p, v})
		}
	}
	return out
}

// genericPeer is any workload of the mesh: an identity no policy names.
func genericPeer() Request {
	generic := Request{}
	for _, a := range rulefields.PeerAttributes {
		generic[a] = AnyOther
	}
	return generic
}

// pinnedIdentityPattern is a principal pattern whose matches all run in one namespace:
// a prefix past the namespace, or a suffix from the namespace on.
var pinnedIdentityPattern = regexp.MustCompile(`^[^/*]+/ns/[^/*]+/[^*]*\*$|^\*/ns/[^/*]+/sa/[^/*]+$`)

// pinnedIdentity tells whether a pattern of a peer attribute names callers of one
// namespace at most: an exact value, or a principal pattern pinned to one namespace.
func pinnedIdentity(attr, p string) bool {
	if !strings.Contains(p, "*") {
		return true
	}
	return attr == rulefields.PeerPrincipal && pinnedIdentityPattern.MatchString(p)
}

// MatchesTokenless tells whether a rule matches some request with no token, on any path.
func MatchesTokenless(r Rule) bool {
	return r.satisfiable(true, Enforcement{Allow: []Rule{r}, Plaintext: true}.Peers())
}

// MatchesPlaintext tells whether a rule matches some request from a caller without mTLS.
func MatchesPlaintext(r Rule) bool { return r.satisfiable(false, []Request{{}}) }

// satisfiable tells whether some request from one of peers, with no token attribute if
// tokenless, matches the rule. For one rule, attributes are independent once an entry of
// from and of to is chosen: each needs one value that all its conditions accept.
func (r Rule) satisfiable(tokenless bool, peers []Request) bool {
	froms, tos := r.From, r.To
	if len(froms) == 0 {
		froms = [][]Condition{nil}
	}
	if len(tos) == 0 {
		tos = [][]Condition{nil}
	}
	for _, from := range froms {
		for _, to := range tos {
			byAttr := map[string][]Condition{}
			for _, c := range slices.Concat(from, to, r.When) {
				byAttr[c.Attr] = append(byAttr[c.Attr], c)
			}
			for _, peer := range peers {
				if attributesSatisfiable(byAttr, peer, tokenless) {
					return true
				}
			}
		}
	}
	return false
}

// attributesSatisfiable tells whether each attribute has a value its conditions all
// accept: the peer's for peer attributes, none for token attributes if tokenless, else
// one of the values worth trying.
func attributesSatisfiable(byAttr map[string][]Condition, peer Request, tokenless bool) bool {
	for attr, cs := range byAttr {
		var candidates []string
		switch {
		case slices.Contains(rulefields.PeerAttributes, attr):
			candidates = []string{peer[attr]}
		case tokenless && rulefields.IsJWT(attr):
			candidates = []string{""}
		default:
			candidates = []string{AnyOther}
			if mayBeAbsent(attr) {
				candidates = append(candidates, "")
			}
			for _, c := range cs {
				for _, p := range slices.Concat(c.Values, c.NotValues) {
					candidates = append(candidates, worthTrying(attr, p)...)
				}
			}
		}
		if !slices.ContainsFunc(candidates, func(v string) bool {
			req := Request{attr: v}
			return allHold(cs, req)
		}) {
			return false
		}
	}
	return true
}

// AdmitsTokenless tells whether some request without a token, on any path, from any
// caller, gets in; also when there are too many to tell.
func (e Enforcement) AdmitsTokenless() bool {
	found, decided := e.Find(Request{}, true, e.Peers(), e.Admits)
	return found != nil || !decided
}

// Find returns a request that ok accepts, or nil: one with fixed's values, from one of
// peers, with no token attribute if tokenless, and for every other attribute the rules
// read one of the values worth trying. decided is false when there are more classes than
// MaxRequestClasses.
func (e Enforcement) Find(fixed Request, tokenless bool, peers []Request, ok func(Request) bool) (found Request, decided bool) {
	dims := e.dimensions(func(attr string) bool {
		_, isFixed := fixed[attr]
		return isFixed || tokenless && rulefields.IsJWT(attr) || slices.Contains(rulefields.PeerAttributes, attr)
	})
	if classesOf(dims, len(peers)) > MaxRequestClasses {
		// Values the conditions treat alike are one class: a padded list is one value.
		for i := range dims {
			dims[i].values = distinct(dims[i].values, dims[i].conditions)
		}
		if classesOf(dims, len(peers)) > MaxRequestClasses {
			return nil, false
		}
	}
	req := maps.Clone(fixed)
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(dims) {
			// The peer's attributes are set in place, and a copy taken only of a find.
			for _, peer := range peers {
				for _, a := range rulefields.PeerAttributes {
					req[a] = peer[a]
				}
				if ok(req) {
					found = maps.Clone(req)
					return true
				}
			}
			return false
		}
		for _, v := range dims[i].values {
			req[dims[i].attr] = v
			if try(i + 1) {
				return true
			}
		}
		return false
	}
	try(0)
	return found, true
}

// dimension is an attribute, the values worth trying for it, and the conditions that
// read it.
type dimension struct {
	attr       string
	values     []string
	conditions []Condition
}

// classesOf is the number of requests find tries: every value of every dimension, from
// each of peers; MaxRequestClasses+1 once past it.
func classesOf(dims []dimension, peers int) int {
	classes := peers
	for _, d := range dims {
		classes *= len(d.values)
		if classes > MaxRequestClasses {
			return MaxRequestClasses + 1
		}
	}
	return classes
}

// maxDistinctWork bounds the value matches distinct makes for one attribute.
const maxDistinctWork = 1 << 22

// distinct keeps the first of each set of values that every condition of cs holds or
// fails alike: they are interchangeable in every rule that reads the attribute. Where
// telling them apart would take more than maxDistinctWork matches, values are kept as
// they are.
func distinct(values []string, cs []Condition) []string {
	patterns := 0
	for _, c := range cs {
		patterns += len(c.Values) + len(c.NotValues)
	}
	if len(values)*patterns > maxDistinctWork {
		return values
	}
	var out []string
	seen := map[string]bool{}
	signature := make([]byte, len(cs))
	for _, v := range values {
		for i, c := range cs {
			signature[i] = '0'
			if c.Holds(Request{c.Attr: v}) {
				signature[i] = '1'
			}
		}
		if !seen[string(signature)] {
			seen[string(signature)] = true
			out = append(out, v)
		}
	}
	return out
}

// Conditions returns every condition of the workload's rules.
func (e Enforcement) Conditions() []Condition {
	var out []Condition
	for _, r := range slices.Concat(e.Deny, e.Allow) {
		for _, entry := range slices.Concat(r.From, r.To) {
			out = append(out, entry...)
		}
		out = append(out, r.When...)
	}
	return out
}

// dimensions returns, for each attribute the rules read but skip, the values to try: one
// no policy names, each value named, one inside each prefix or suffix, and "" where a
// request may lack the attribute (headers, claims).
func (e Enforcement) dimensions(skip func(attr string) bool) []dimension {
	var dims []dimension
	index := map[string]int{}
	for _, c := range e.Conditions() {
		if skip(c.Attr) {
			continue
		}
		i, ok := index[c.Attr]
		if !ok {
			i = len(dims)
			index[c.Attr] = i
			values := []string{AnyOther}
			if mayBeAbsent(c.Attr) {
				values = append(values, "")
			}
			dims = append(dims, dimension{attr: c.Attr, values: values})
		}
		dims[i].conditions = append(dims[i].conditions, c)
		for _, p := range slices.Concat(c.Values, c.NotValues) {
			for _, v := range worthTrying(c.Attr, p) {
				if !slices.Contains(dims[i].values, v) {
					dims[i].values = append(dims[i].values, v)
				}
			}
		}
	}
	return dims
}

// mayBeAbsent tells whether a request can lack an attribute: every request has a method,
// a port, addresses and a host.
func mayBeAbsent(attr string) bool { return !rulefields.Of(attr).Always }

// worthTrying are the values to try for a pattern of attr: a value it matches
// (representative); for an address range, its first address and the one after its last,
// so that every part of the address space the ranges cut out is tried.
func worthTrying(attr, p string) []string {
	if rulefields.Of(attr).Match == rulefields.MatchAddress {
		if prefix, err := netip.ParsePrefix(p); err == nil {
			prefix = prefix.Masked()
			out := []string{prefix.Addr().String()}
			last := prefix.Addr().AsSlice()
			for i := prefix.Bits(); i < len(last)*8; i++ {
				last[i/8] |= 1 << (7 - i%8)
			}
			if addr, _ := netip.AddrFromSlice(last); addr.Next().IsValid() {
				out = append(out, addr.Next().String())
			}
			return out
		}
	}
	if v := Representative(p); v != "" {
		return []string{v}
	}
	return nil
}

// Representative returns a value a pattern matches and no wider one need: the value
// itself, or one inside a prefix or suffix; "" for "*".
func Representative(p string) string {
	switch {
	case rulefields.IsPathTemplate(p):
		return strings.NewReplacer("{**}", AnyOther, "{*}", AnyOther).Replace(p)
	case p == "*":
		return ""
	case strings.HasPrefix(p, "*"):
		return AnyOther + p[1:]
	case strings.HasSuffix(p, "*"):
		return strings.TrimSuffix(p, "*") + AnyOther
	}
	return p
}

// Peers returns the callers worth trying: the anonymous ones, and each identity,
// namespace, service account and trust domain a rule names.
func (e Enforcement) Peers() []Request {
	out := e.AnonymousPeers()
	for _, pv := range e.peerValues() {
		if !pinnedIdentity(pv.attr, pv.pattern) {
			continue // among the anonymous ones
		}
		peer := genericPeer()
		if pv.attr == rulefields.PeerPrincipal {
			maps.Copy(peer, PeerOf(pv.value))
		} else {
			peer[pv.attr] = pv.value
		}
		out = append(out, peer)
	}
	return out
}

// DescribeCaller names the caller of a request, for messages: one without mTLS, the
// workloads a pattern admits, an identity, namespace or service account a policy names,
// or any workload of the mesh.
func DescribeCaller(r Request) string {
	pattern := func(attr string) bool { return strings.Contains(r[attr], AnyOther) && r[attr] != AnyOther }
	wildcard := func(attr string) string { return strings.ReplaceAll(r[attr], AnyOther, "*") }
	switch {
	case r[rulefields.PeerPrincipal] == "":
		return "a caller without mTLS"
	case pattern(rulefields.PeerPrincipal):
		return "any workload whose identity matches " + wildcard(rulefields.PeerPrincipal)
	case pattern(rulefields.Namespace):
		return "any workload of a namespace matching " + wildcard(rulefields.Namespace)
	case pattern(rulefields.ServiceAccount):
		return "any workload whose service account matches " + wildcard(rulefields.ServiceAccount)
	case pattern(rulefields.TrustDomain):
		return "any workload of a trust domain matching " + wildcard(rulefields.TrustDomain)
	case r[rulefields.PeerPrincipal] != AnyOther:
		return r[rulefields.PeerPrincipal]
	case r[rulefields.Namespace] != AnyOther:
		return "namespace " + r[rulefields.Namespace]
	case r[rulefields.ServiceAccount] != AnyOther:
		return "service account " + r[rulefields.ServiceAccount]
	case r[rulefields.TrustDomain] != AnyOther:
		return "trust domain " + r[rulefields.TrustDomain]
	}
	return "any workload of the mesh"
}

// DescribeRequest says, for messages, who sends a request of this class.
func DescribeRequest(r Request) string {
	if _, ok := r[attrUndecided]; ok {
		return fmt.Sprintf("a request with no token that meshguard cannot rule out: the policies name more than %d combinations of values to try (shorten or split their lists)", MaxRequestClasses)
	}
	parts := []string{"a request with no token", "from " + DescribeCaller(r)}
	if r[rulefields.Port] == AnyOther {
		parts = append(parts, "to a port no policy names")
	}
	for _, a := range []string{rulefields.Method, rulefields.Port} {
		if v, ok := r[a]; ok && v != AnyOther && !strings.Contains(v, AnyOther) {
			parts = append(parts, fmt.Sprintf("%s %s", strings.TrimPrefix(strings.TrimPrefix(a, "request."), "destination."), v))
		}
	}
	return strings.Join(parts, ", ")
}

// ZtunnelReading is what ztunnel gets of the field of the condition.
func (c Condition) ZtunnelReading() rulefields.Ztunnel {
	switch c.At.List {
	case 'f':
		return rulefields.Source[c.At.Field].Ztunnel
	case 't':
		return rulefields.Operation[c.At.Field].Ztunnel
	}
	return rulefields.ZtunnelOf(c.Attr)
}
