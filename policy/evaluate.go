package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"

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
type request map[string]string

// anyOther is a value no policy names: only wildcards match it.
const anyOther = "\x00"

// anyPath is a path no policy names: it matches "/*" and "*", nothing narrower.
const anyPath = "/" + anyOther

// condition is one field of a rule: the attribute it reads, and its positive and negative
// values (either may be empty); at says where it is in the rule, for explanations.
type condition struct {
	attr              string
	values, notValues []string
	at                fieldRef
	match             rulefields.Match
}

// newCondition is the condition on attr of these values, at.
func newCondition(attr string, values, notValues []string, at fieldRef) condition {
	return condition{attr, values, notValues, at, rulefields.Of(attr).Match}
}

// fieldRef is where a condition is in its rule: the entry of from (list 'f') or to ('t') and
// the index of its field in rulefields.Source or rulefields.Operation, or the index in when ('w').
type fieldRef struct {
	list         byte
	entry, field int
}

// path names the field in the rule, its negative form if negative: from[0].source.notPaths.
func (f fieldRef) path(negative bool) string {
	pick := func(name, not string) string {
		if negative {
			return not
		}
		return name
	}
	switch f.list {
	case 'f':
		return fmt.Sprintf("from[%d].source.%s", f.entry, pick(rulefields.Source[f.field].Name, rulefields.Source[f.field].Not))
	case 't':
		return fmt.Sprintf("to[%d].operation.%s", f.entry, pick(rulefields.Operation[f.field].Name, rulefields.Operation[f.field].Not))
	}
	return fmt.Sprintf("when[%d]", f.entry)
}

// conditions are the conditions of entry i of a from or to list (list 'f' or 't'), one per
// field set.
func conditions[T any](fields []rulefields.Field[T], list byte, i int, entry T) []condition {
	set := 0
	for _, f := range fields {
		if f.Set(entry) {
			set++
		}
	}
	cs := make([]condition, 0, set) // one allocation: a policy is compiled on every review
	for j, f := range fields {
		if f.Set(entry) {
			cs = append(cs, newCondition(f.Attr, f.Values(entry), f.NotValues(entry), fieldRef{list, i, j}))
		}
	}
	return cs
}

// holds tells whether the condition holds for request r.
func (c condition) holds(r request) bool {
	v := r[c.attr]
	if v == "" {
		return c.holdsFor(nil)
	}
	one := [1]string{v}
	return c.holdsFor(one[:])
}

// holdsFor tells whether the condition holds for an attribute of these values (a claim
// may have several): a positive condition if one of them matches, a negative one if none
// does. An attribute the request lacks matches no positive value and every negative one.
func (c condition) holdsFor(values []string) bool {
	matchesAny := func(patterns []string) bool {
		return slices.ContainsFunc(values, func(v string) bool {
			return slices.ContainsFunc(patterns, func(p string) bool { return c.match.Matches(v, p) })
		})
	}
	return (len(c.values) == 0 || matchesAny(c.values)) && !matchesAny(c.notValues)
}

// valueMatches is the match Envoy makes of the matcher istiod generates for a value of a
// policy, the one place every rule and explain match by: exact, prefix "abc*", suffix
// "*abc", or "*" for any value present; hosts ignoring case; paths without their query or
// fragment, and path templates ({*} a segment, {**} the rest); addresses by CIDR range.
func valueMatches(attr, v, pattern string) bool { return rulefields.Of(attr).Match.Matches(v, pattern) }

// compiledRule is an AuthorizationPolicy rule as conditions.
type compiledRule struct {
	from, to [][]condition // entries, ORed; conditions of one entry, ANDed
	when     []condition
}

func (r compiledRule) matches(req request) bool {
	return anyEntryHolds(r.from, req) && anyEntryHolds(r.to, req) && allHold(r.when, req)
}

func anyEntryHolds(entries [][]condition, req request) bool {
	return len(entries) == 0 || slices.ContainsFunc(entries, func(cs []condition) bool { return allHold(cs, req) })
}

func allHold(cs []condition, req request) bool {
	for _, c := range cs {
		if !c.holds(req) {
			return false
		}
	}
	return true
}

// compileRule returns a rule's conditions; false for a rule Istio skips.
func compileRule(namespace string, r *apRule) (compiledRule, bool) {
	out := compiledRule{from: make([][]condition, 0, len(r.From)), to: make([][]condition, 0, len(r.To))}
	for i, f := range r.From {
		out.from = append(out.from, qualifyServiceAccounts(namespace, conditions(rulefields.Source, 'f', i, f.GetSource())))
	}
	for i, t := range r.To {
		out.to = append(out.to, conditions(rulefields.Operation, 't', i, t.GetOperation()))
	}
	for i, w := range r.When {
		if !rulefields.KnownWhenKey(w.Key) {
			return compiledRule{}, false
		}
		out.when = append(out.when, newCondition(w.Key, w.Values, w.NotValues, fieldRef{'w', i, 0}))
	}
	return out, true
}

// qualifyServiceAccounts names the namespace of each service account a condition names
// without one: the policy's, as istiod reads it.
func qualifyServiceAccounts(namespace string, cs []condition) []condition {
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
		if c.attr == rulefields.ServiceAccount {
			cs[i].values, cs[i].notValues = qualify(c.values), qualify(c.notValues)
		}
	}
	return cs
}

// enforcement is how the AuthorizationPolicies of one workload are enforced.
type enforcement struct {
	deny, allow []compiledRule
	// allowPolicies tells whether an ALLOW policy applies: then only what one of its rules
	// matches is admitted (an ALLOW policy without rules admits nothing).
	allowPolicies bool
	// plaintext tells whether callers without mTLS reach the workload (PeerAuthentication
	// not STRICT).
	plaintext bool
}

func enforcementOf(aps []*AuthorizationPolicy, plaintext bool) enforcement {
	return enforcementBy(aps, plaintext, false)
}

// enforcementBy is enforcementOf at a proxy that receives each rule as receive says: ztunnel,
// or another.
func enforcementBy(aps []*AuthorizationPolicy, plaintext, ztunnel bool) enforcement {
	e := enforcement{plaintext: plaintext}
	for _, ap := range aps {
		if isDryRun(ap) || !isAllow(ap) && !isDeny(ap) {
			continue
		}
		if isAllow(ap) {
			e.allowPolicies = true
		}
		for _, r := range ap.Spec.Rules {
			c, skipped := receive(ztunnel, ap, r)
			switch {
			case skipped != "":
			case isAllow(ap):
				e.allow = append(e.allow, c)
			default:
				e.deny = append(e.deny, c)
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

// receive is a rule of ap as a proxy receives it, or why it receives none: a sidecar, a
// waypoint or a gateway the rule as written, but for one with a when key Istio does not
// know; ztunnel no CUSTOM policy, and each rule as istiod translates it for ztunnel
// (ztunnelRule).
func receive(ztunnel bool, ap *AuthorizationPolicy, r *apRule) (compiledRule, string) {
	if ztunnel && ap.Spec.Action == securityv1beta1.AuthorizationPolicy_CUSTOM {
		return compiledRule{}, ztunnelNoCustom
	}
	c, ok := compileRule(ap.Namespace, r)
	if !ok {
		return compiledRule{}, unknownWhenKey
	}
	if ztunnel {
		var dropped string
		if c, dropped = ztunnelRule(ap, r, c); dropped != "" {
			return compiledRule{}, dropped
		}
	}
	return c, ""
}

// decide is Envoy's RBAC decision, given what matched: a DENY rule denies; where ALLOW
// policies apply, a request no ALLOW rule matches is denied; then a matching CUSTOM rule
// leaves the verdict to its provider; else the request is allowed.
func decide(denied, allowPolicies, allowed, custom bool) Verdict {
	switch {
	case denied, allowPolicies && !allowed:
		return VerdictDeny
	case custom:
		return VerdictUndetermined
	}
	return VerdictAllow
}

// admits tells whether a request gets past the workload's DENY and ALLOW policies.
// CUSTOM policies are left out: their provider's verdict is not known here, and no
// CUSTOM match makes decide deny.
func (e enforcement) admits(req request) bool {
	matches := func(r compiledRule) bool { return r.matches(req) }
	denied := slices.ContainsFunc(e.deny, matches)
	allowed := !denied && e.allowPolicies && slices.ContainsFunc(e.allow, matches)
	return decide(denied, e.allowPolicies, allowed, false) != VerdictDeny
}

// maxRequestClasses bounds the requests one question tries: the product of the values the
// policies of one workload name. Beyond it the question is left undecided.
const maxRequestClasses = 4096

// attrUndecided marks the request that stands for all those the engine did not try: the
// policies name more than maxRequestClasses combinations of values. It is read as an
// opening, so that padding a policy with values never makes a workload look protected.
const attrUndecided = "meshguard.undecided"

// undecidedRequest is a request the engine cannot rule out (see attrUndecided).
func undecidedRequest() request { return request{attrUndecided: "true"} }

// tokenlessOpening returns a request with no token that the workload admits, on a path
// no policy names and from a caller no policy names (without mTLS, or any workload of the
// mesh), or nil when every such request is turned away. Token-less requests admitted only
// on named paths or from named callers are exemptions made on purpose (a health check, the
// workloads of one namespace over STRICT mTLS). When the policies name too many values to
// try every class, it is undecidedRequest: the engine fails closed.
func (e enforcement) tokenlessOpening() request {
	return e.tokenlessOpeningWith(request{rulefields.Path: anyPath, rulefields.Host: anyOther})
}

// tokenlessOpeningWith is tokenlessOpening among the requests with fixed's values.
func (e enforcement) tokenlessOpeningWith(fixed request) request {
	found, decided := e.find(fixed, true, e.anonymousPeers(), e.admits)
	if !decided {
		return undecidedRequest()
	}
	return found
}

// anonymousPeers are the callers no policy names: one without mTLS (where mTLS is not
// STRICT), any workload of the mesh, and a workload of the mesh matching each pattern a
// policy gives that is not pinned to one namespace (pinnedIdentity): such a pattern
// names no caller in particular. cluster.local/* or tenant-* admits the workloads of
// namespaces any tenant may create.
func (e enforcement) anonymousPeers() []request {
	out := []request{genericPeer()}
	if e.plaintext {
		out = []request{{}, genericPeer()}
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
func (e enforcement) peerValues() []peerValue {
	var out []peerValue
	seen := map[[2]string]bool{}
	for _, c := range e.conditions() {
		if !slices.Contains(rulefields.PeerAttributes, c.attr) {
			continue
		}
		for _, p := range slices.Concat(c.values, c.notValues) {
			v := representative(p)
			if v == "" || seen[[2]string{c.attr, v}] {
				continue
			}
			seen[[2]string{c.attr, v}] = true
			out = append(out, peerValue{c.attr, p, v})
		}
	}
	return out
}

// genericPeer is any workload of the mesh: an identity no policy names.
func genericPeer() request {
	generic := request{}
	for _, a := range rulefields.PeerAttributes {
		generic[a] = anyOther
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

// matchesTokenless tells whether a rule matches some request with no token, on any path.
func matchesTokenless(r compiledRule) bool {
	return r.satisfiable(true, enforcement{allow: []compiledRule{r}, plaintext: true}.peers())
}

// matchesPlaintext tells whether a rule matches some request from a caller without mTLS.
func matchesPlaintext(r compiledRule) bool { return r.satisfiable(false, []request{{}}) }

// satisfiable tells whether some request from one of peers, with no token attribute if
// tokenless, matches the rule. For one rule, attributes are independent once an entry of
// from and of to is chosen: each needs one value that all its conditions accept.
func (r compiledRule) satisfiable(tokenless bool, peers []request) bool {
	froms, tos := r.from, r.to
	if len(froms) == 0 {
		froms = [][]condition{nil}
	}
	if len(tos) == 0 {
		tos = [][]condition{nil}
	}
	for _, from := range froms {
		for _, to := range tos {
			byAttr := map[string][]condition{}
			for _, c := range slices.Concat(from, to, r.when) {
				byAttr[c.attr] = append(byAttr[c.attr], c)
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
func attributesSatisfiable(byAttr map[string][]condition, peer request, tokenless bool) bool {
	for attr, cs := range byAttr {
		var candidates []string
		switch {
		case slices.Contains(rulefields.PeerAttributes, attr):
			candidates = []string{peer[attr]}
		case tokenless && rulefields.IsJWT(attr):
			candidates = []string{""}
		default:
			candidates = []string{anyOther}
			if mayBeAbsent(attr) {
				candidates = append(candidates, "")
			}
			for _, c := range cs {
				for _, p := range slices.Concat(c.values, c.notValues) {
					candidates = append(candidates, worthTrying(attr, p)...)
				}
			}
		}
		if !slices.ContainsFunc(candidates, func(v string) bool {
			req := request{attr: v}
			return allHold(cs, req)
		}) {
			return false
		}
	}
	return true
}

// admitsTokenless tells whether some request without a token, on any path, from any
// caller, gets in; also when there are too many to tell.
func (e enforcement) admitsTokenless() bool {
	found, decided := e.find(request{}, true, e.peers(), e.admits)
	return found != nil || !decided
}

// find returns a request that ok accepts, or nil: one with fixed's values, from one of
// peers, with no token attribute if tokenless, and for every other attribute the rules
// read one of the values worth trying. decided is false when there are more classes than
// maxRequestClasses.
func (e enforcement) find(fixed request, tokenless bool, peers []request, ok func(request) bool) (found request, decided bool) {
	dims := e.dimensions(func(attr string) bool {
		_, isFixed := fixed[attr]
		return isFixed || tokenless && rulefields.IsJWT(attr) || slices.Contains(rulefields.PeerAttributes, attr)
	})
	if classesOf(dims, len(peers)) > maxRequestClasses {
		// Values the conditions treat alike are one class: a padded list is one value.
		for i := range dims {
			dims[i].values = distinct(dims[i].values, dims[i].conditions)
		}
		if classesOf(dims, len(peers)) > maxRequestClasses {
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
	conditions []condition
}

// classesOf is the number of requests find tries: every value of every dimension, from
// each of peers; maxRequestClasses+1 once past it.
func classesOf(dims []dimension, peers int) int {
	classes := peers
	for _, d := range dims {
		classes *= len(d.values)
		if classes > maxRequestClasses {
			return maxRequestClasses + 1
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
func distinct(values []string, cs []condition) []string {
	patterns := 0
	for _, c := range cs {
		patterns += len(c.values) + len(c.notValues)
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
			if c.holds(request{c.attr: v}) {
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

// conditions returns every condition of the workload's rules.
func (e enforcement) conditions() []condition {
	var out []condition
	for _, r := range slices.Concat(e.deny, e.allow) {
		for _, entry := range slices.Concat(r.from, r.to) {
			out = append(out, entry...)
		}
		out = append(out, r.when...)
	}
	return out
}

// dimensions returns, for each attribute the rules read but skip, the values to try: one
// no policy names, each value named, one inside each prefix or suffix, and "" where a
// request may lack the attribute (headers, claims).
func (e enforcement) dimensions(skip func(attr string) bool) []dimension {
	var dims []dimension
	index := map[string]int{}
	for _, c := range e.conditions() {
		if skip(c.attr) {
			continue
		}
		i, ok := index[c.attr]
		if !ok {
			i = len(dims)
			index[c.attr] = i
			values := []string{anyOther}
			if mayBeAbsent(c.attr) {
				values = append(values, "")
			}
			dims = append(dims, dimension{attr: c.attr, values: values})
		}
		dims[i].conditions = append(dims[i].conditions, c)
		for _, p := range slices.Concat(c.values, c.notValues) {
			for _, v := range worthTrying(c.attr, p) {
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
	if v := representative(p); v != "" {
		return []string{v}
	}
	return nil
}

// representative returns a value a pattern matches and no wider one need: the value
// itself, or one inside a prefix or suffix; "" for "*".
func representative(p string) string {
	switch {
	case rulefields.IsPathTemplate(p):
		return strings.NewReplacer("{**}", anyOther, "{*}", anyOther).Replace(p)
	case p == "*":
		return ""
	case strings.HasPrefix(p, "*"):
		return anyOther + p[1:]
	case strings.HasSuffix(p, "*"):
		return strings.TrimSuffix(p, "*") + anyOther
	}
	return p
}

// peers returns the callers worth trying: the anonymous ones, and each identity,
// namespace, service account and trust domain a rule names.
func (e enforcement) peers() []request {
	out := e.anonymousPeers()
	for _, pv := range e.peerValues() {
		if !pinnedIdentity(pv.attr, pv.pattern) {
			continue // among the anonymous ones
		}
		peer := genericPeer()
		if pv.attr == rulefields.PeerPrincipal {
			maps.Copy(peer, peerOf(pv.value))
		} else {
			peer[pv.attr] = pv.value
		}
		out = append(out, peer)
	}
	return out
}

// describeCaller names the caller of a request, for messages: one without mTLS, the
// workloads a pattern admits, an identity, namespace or service account a policy names,
// or any workload of the mesh.
func describeCaller(r request) string {
	pattern := func(attr string) bool { return strings.Contains(r[attr], anyOther) && r[attr] != anyOther }
	wildcard := func(attr string) string { return strings.ReplaceAll(r[attr], anyOther, "*") }
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
	case r[rulefields.PeerPrincipal] != anyOther:
		return r[rulefields.PeerPrincipal]
	case r[rulefields.Namespace] != anyOther:
		return "namespace " + r[rulefields.Namespace]
	case r[rulefields.ServiceAccount] != anyOther:
		return "service account " + r[rulefields.ServiceAccount]
	case r[rulefields.TrustDomain] != anyOther:
		return "trust domain " + r[rulefields.TrustDomain]
	}
	return "any workload of the mesh"
}

// describeRequest says, for messages, who sends a request of this class.
func describeRequest(r request) string {
	if _, ok := r[attrUndecided]; ok {
		return fmt.Sprintf("a request with no token that meshguard cannot rule out: the policies name more than %d combinations of values to try (shorten or split their lists)", maxRequestClasses)
	}
	parts := []string{"a request with no token", "from " + describeCaller(r)}
	if r[rulefields.Port] == anyOther {
		parts = append(parts, "to a port no policy names")
	}
	for _, a := range []string{rulefields.Method, rulefields.Port} {
		if v, ok := r[a]; ok && v != anyOther && !strings.Contains(v, anyOther) {
			parts = append(parts, fmt.Sprintf("%s %s", strings.TrimPrefix(strings.TrimPrefix(a, "request."), "destination."), v))
		}
	}
	return strings.Join(parts, ", ")
}

// mtlsStrict tells whether mTLS is STRICT for a workload.
func mtlsStrict(st State, root string, w *Workload) bool {
	return mtlsMode(st, root, w) == securityv1beta1.PeerAuthentication_MutualTLS_STRICT
}

// ztunnelReading is what ztunnel gets of the field of the condition.
func (c condition) ztunnelReading() rulefields.Ztunnel {
	switch c.at.list {
	case 'f':
		return rulefields.Source[c.at.field].Ztunnel
	case 't':
		return rulefields.Operation[c.at.field].Ztunnel
	}
	return rulefields.ZtunnelOf(c.attr)
}
