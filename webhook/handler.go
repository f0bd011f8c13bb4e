package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// Paths the webhook serves.
const (
	ValidatePath = "/validate"
	MutatePath   = "/mutate"
)

// cleanupControllers are Kubernetes' controllers that delete objects because their
// namespace or owner is going. Their DELETEs in a terminating namespace are not judged:
// MG303 or MG812 would leave it terminating for ever. Elsewhere they are judged like any
// other: a tenant steers what the garbage collector deletes by setting an ownerReference.
// kube-controller-manager runs them under its own name where it does not use a service
// account per controller.
var cleanupControllers = map[string]bool{
	"system:serviceaccount:kube-system:namespace-controller":      true,
	"system:serviceaccount:kube-system:generic-garbage-collector": true,
	"system:kube-controller-manager":                              true,
}

// maxWarningLength keeps warnings whole in kubectl (the API server advises 120 characters).
const maxWarningLength = 120

// Server judges admission requests. It is safe for concurrent use.
type Server struct {
	Engine *policy.Engine
	// Reader is the informer cache the live state is read from.
	Reader client.Reader
	// Views keep per-namespace state between requests (see Views.Watch); nil builds it for
	// every request from Reader.
	Views *Views
	// Synced is set once every informer cache has synced: until then security resources are
	// denied ("meshguard is starting") rather than judged on a partial view.
	Synced *atomic.Bool
	// IstiodVersions are the Istio control-plane versions judged by MG701, when known.
	IstiodVersions []string
	Log            logr.Logger
	Metrics        *Metrics
	// Limits bound each review and all of them together (DefaultLimits when zero).
	Limits Limits
	// Freshness tells when the cache's watches have been failing too long: the security
	// kinds are then refused. Nil trusts the cache.
	Freshness *Freshness
	// APIReader reads the API server itself, uncached: a write that may open, judged by a
	// new leader or without a Leader, is judged against the policies it lists, not against
	// a cache that may lag behind a write another replica allowed a moment ago. Nil judges
	// on the cache.
	APIReader client.Reader
	// Leader elects the replica that judges the writes that may open; nil judges each
	// here.
	Leader *Leader

	pending pendingWrites
	dryRuns dryRunWrites
	// consistentSlots bound the reviews reading from the API server at once (readSlots).
	consistentSlots chan struct{}
	readSlotsOnce   sync.Once
}

func (s *Server) state(ctx context.Context) *liveState {
	views := s.Views
	if views == nil {
		views = NewViews(s.Reader)
	}
	return &liveState{ctx: ctx, views: views, istiod: s.IstiodVersions, pending: &s.pending}
}

// State is the live state reviews judge against, read lazily, a namespace at a time, from
// the views over the cache; with the error, if any, of those reads. The audit judges with
// it too.
func (s *Server) State(ctx context.Context) (policy.State, func() error) {
	st := s.state(ctx)
	return st, st.Err
}

// Validating returns the validating admission handler.
func (s *Server) Validating() admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		return s.guard(req, "validate", func() admission.Response { return s.validate(ctx, req) })
	})
}

// Mutating returns the mutating admission handler: coverage labels on new Pods.
func (s *Server) Mutating() admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		return s.guard(req, "mutate", func() admission.Response { return s.mutate(ctx, req) })
	})
}

// guard records the request and turns a panic into a denial: the last line of defence, so
// that one bad request never takes the server down nor slips through.
func (s *Server) guard(req admission.Request, webhook string, handle func() admission.Response) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			s.Log.Error(fmt.Errorf("panic: %v", p), "judging request", "webhook", webhook, "uid", req.UID, "kind", req.Kind.Kind)
			resp = admission.Errored(http.StatusInternalServerError, errors.New("meshguard failed to judge this request; see its logs"))
		}
		s.Metrics.observe(webhook, req, resp)
	}()
	return handle()
}

// terminating tells whether the cache shows namespace ns being deleted.
func (s *Server) terminating(ctx context.Context, ns string) bool {
	var namespace corev1.Namespace
	return ns != "" && s.Reader.Get(ctx, client.ObjectKey{Name: ns}, &namespace) == nil && namespace.DeletionTimestamp != nil
}

func (s *Server) validate(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete && cleanupControllers[req.UserInfo.Username] && s.terminating(ctx, req.Namespace) {
		return admission.Allowed("")
	}
	kind := kinds.Lookup(req.Kind.Group, req.Kind.Kind)
	st := s.state(ctx)
	var stored storedObject
	if s.Synced.Load() {
		stored = st.stored
	}
	// On DELETE, decodeRequest gives the old object as obj.
	obj, old, errResp := decodeRequest(req, stored)
	if errResp != nil {
		return *errResp
	}
	policyWrite := kind.Role == kinds.Policy && s.Synced.Load()
	if policyWrite && req.Operation == admissionv1.Create && obj.GetResourceVersion() != "" {
		// The API server refuses it after admission: allowed, it would be a pending write
		// that never lands.
		return admission.Denied("meshguard: metadata.resourceVersion must not be set on an object to be created")
	}
	if !policyWrite || !policy.MayOpen(policy.Operation(req.Operation), obj, old) {
		return s.judge(ctx, st, req, kind, obj, old, nil)
	}
	// A write that may open is judged by the replica that leads (see Leader).
	address, err := s.Leader.route(forwarded(ctx))
	if err != nil {
		return retry(err)
	}
	if address != "" {
		resp, err := s.Leader.forward(ctx, address, req)
		if err != nil {
			s.Metrics.forwardFailed()
			s.Log.Info("the replica that judges the changes that may open could not judge one", "leader", address, "error", err.Error())
			return retry(fmt.Errorf("the replica that judges the changes that may open a workload, at %s, could not judge this one: %w", address, err))
		}
		return resp
	}
	// It is committed only if no other such write was allowed in a namespace it read
	// meanwhile; else judged again, the other laid over. Unless this replica has led for
	// a while, it is judged against the API server's policies of its namespace and the
	// root namespace: another replica may have allowed a write there a moment ago. A dry
	// run is judged as the write would be, after its user's dry runs of a moment before
	// (dryRunWrites), and commits nothing. Each attempt reads the state afresh.
	// Where more writes allowed a moment ago are on their way than it can be judged
	// beside, it waits a little for the cache to show them.
	w := &openingWrite{commit: !dryRun(req)}
	if s.APIReader != nil && !s.Leader.settled() {
		w.consistent = &consistentReads{reader: s.APIReader, slots: s.readSlots()}
	}
	wait := cacheWait{left: s.limits().CacheWait}
	for conflicts := 0; ; {
		leave := func() {}
		if w.commit {
			leave = s.pending.enter(conflicts >= maxOptimisticAttempts-1)
		}
		resp := s.judge(ctx, s.state(ctx), req, kind, obj, old, w)
		leave()
		switch {
		case w.conflict:
			conflicts++
			s.Metrics.conflict()
		case !w.behind || !wait.pause(ctx):
			return resp
		case wait.pauses == 1:
			s.Metrics.cacheWaited()
		}
	}
}

// readSlots are the slots of the reviews reading from the API server at once.
func (s *Server) readSlots() chan struct{} {
	s.readSlotsOnce.Do(func() { s.consistentSlots = make(chan struct{}, maxConsistentReads) })
	return s.consistentSlots
}

// limits are s.Limits, or the defaults when unset.
func (s *Server) limits() Limits {
	if s.Limits.InFlight == 0 {
		return DefaultLimits()
	}
	return s.Limits
}

// cacheWait is what is left of the time a write may wait for the cache to catch up.
type cacheWait struct {
	left, step time.Duration
	pauses     int
}

// pause waits before the next look at the cache, a step twice as long as the last (the
// first 5 ms, at most 100 ms); false when no time is left or ctx is done.
func (c *cacheWait) pause(ctx context.Context) bool {
	c.step = min(max(2*c.step, 5*time.Millisecond), 100*time.Millisecond, c.left)
	if c.step <= 0 {
		return false
	}
	c.left -= c.step
	c.pauses++
	t := time.NewTimer(c.step)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retry refuses a write meshguard cannot judge now, to be retried: the security kinds fail
// closed.
func retry(why error) admission.Response {
	return admission.Denied("meshguard: " + why.Error() + "; retry in a few seconds")
}

// maxOptimisticAttempts is how many times a write that may open is judged beside others
// before it is judged alone.
const maxOptimisticAttempts = 3

// openingWrite is what a write that may open carries from one attempt to the next.
type openingWrite struct {
	// commit is false for a dry run.
	commit     bool
	consistent *consistentReads
	// conflict tells that the last attempt was allowed but another write committed first.
	conflict bool
	// behind tells that the last attempt met more writes allowed a moment ago, and not in
	// the cache yet, than it is judged beside (maxUnknownWrites).
	behind bool
}

// judge judges a request's objects against the live state st; w, for a write that may
// open, makes the state consistent and commits the write if allowed.
func (s *Server) judge(ctx context.Context, st *liveState, req admission.Request, kind *kinds.Kind, obj, old metav1.Object, w *openingWrite) admission.Response {
	if w != nil {
		w.conflict, w.behind = false, false
		if c := w.consistent; c != nil && c.namespaces == nil {
			c.namespaces = []string{req.Namespace, st.Settings(req.Namespace).Root}
		}
		st.consistent, st.world = w.consistent, &pendingWorld{}
		if w.commit {
			st.seen = map[string]uint64{}
		} else {
			st.dryRuns = s.dryRuns.of(req.UserInfo.Username, time.Now())
		}
	}
	if g, ok := obj.(*policy.MeshGuardrail); ok {
		if req.Operation != admissionv1.Delete {
			namespaces, err := s.namespaces(ctx)
			if err != nil {
				return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster's namespaces: %w", err))
			}
			if errs := s.Engine.ValidateGuardrail(g, namespaces); len(errs) > 0 {
				return admission.Denied(fmt.Sprintf("meshguard: MeshGuardrail %q is invalid: %v", g.Name, errs.ToAggregate()))
			}
		}
		return admission.Allowed("")
	}
	if !s.Synced.Load() {
		// Only the security kinds fail closed: Pods, and the Services, Namespaces and
		// Gateways reviewed for their waypoint bindings, are not held up while meshguard
		// starts, as they are not while it is down.
		if kind != nil && kind.Role != kinds.Policy {
			return admission.Allowed("").WithWarnings("meshguard is starting: this change was not judged")
		}
		return admission.Denied("meshguard is starting: its caches have not synced yet; retry in a few seconds")
	}
	if err := s.Freshness.Stale(); err != nil && kind != nil && kind.Role == kinds.Policy {
		return admission.Denied(err.Error() + "; retry once it recovers")
	}
	if st.seen != nil {
		st.policies(obj.GetNamespace()) // the write's own namespace is always read, so always committed against
	}
	resp, findings, done := s.verdict(ctx, st, req, obj, old)
	if done || w == nil || !resp.Allowed {
		s.Metrics.findings(findings, dryRun(req))
		return resp
	}
	if denied := s.inEveryWorld(ctx, st.world, req, obj, old, w); denied != nil {
		return *denied
	}
	after := obj
	if req.Operation == admissionv1.Delete {
		after = nil
	}
	if st.dryRuns != nil {
		st.dryRuns.commit(nil, kind.Kind, obj.GetNamespace(), obj.GetName(), after, old, time.Now())
	}
	if st.seen != nil {
		switch s.pending.commit(st.seen, kind.Kind, obj.GetNamespace(), obj.GetName(), after, old, time.Now()) {
		case overtaken:
			w.conflict = true
			return resp
		case competing:
			return retry(fmt.Errorf("another change of %s %s/%s, allowed a moment ago, is not in effect yet: "+
				"of the two at most one can land, and this one is judged once it has", kind.Kind, obj.GetNamespace(), obj.GetName()))
		}
	}
	s.Metrics.findings(findings, dryRun(req))
	return resp
}

// verdict judges the request's objects against st and encodes the findings; done tells
// that the response is no verdict (out of time, a read failed).
func (s *Server) verdict(ctx context.Context, st *liveState, req admission.Request, obj, old metav1.Object) (resp admission.Response, findings []policy.Finding, done bool) {
	findings = s.Engine.Review(policy.Review{Operation: policy.Operation(req.Operation), Object: obj, OldObject: old, State: st, Done: ctx.Done()})
	if ctx.Err() != nil {
		// The API server gave up, or the review ran past Limits.ReviewTimeout: the verdict
		// is incomplete, and the failure policy decides.
		return admission.Errored(http.StatusServiceUnavailable, errors.New("meshguard ran out of time judging this request")), nil, true
	}
	if err := st.Err(); err != nil {
		s.Log.Error(err, "reading the cluster state", "uid", req.UID)
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err)), nil, true
	}
	warnOnly := false
	if len(findings) > 0 { // most reviews find nothing: no guardrail to ask
		ns := obj.GetNamespace()
		if _, isNamespace := obj.(*corev1.Namespace); isNamespace {
			ns = obj.GetName()
		}
		warnOnly = st.Settings(ns).WarnOnly
	}
	return respond(findings, dryRun(req), warnOnly), findings, false
}

// maxUnknownWrites bounds the pending writes of unknown outcome a write that may open is
// judged beside: each doubles the states it is judged in.
const maxUnknownWrites = 3

// inEveryWorld judges a write that may open, allowed with the pending writes it met laid
// over (first), in every other state they may leave, each landed or failed, and returns
// the first denial, if any. A write meshguard allowed may fail afterwards (another writer's
// came first), or land after this one: safe is what is safe whichever of them land.
func (s *Server) inEveryWorld(ctx context.Context, first *pendingWorld, req admission.Request, obj, old metav1.Object, w *openingWrite) *admission.Response {
	if len(first.unknown) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(first.unknown), func(a, b pendingKey) int {
		return cmp.Or(strings.Compare(a.namespace, b.namespace), strings.Compare(a.kind, b.kind), strings.Compare(a.name, b.name))
	})
	if len(keys) > maxUnknownWrites {
		w.behind = true
		resp := retry(fmt.Errorf("%d changes of these policies, allowed a moment ago, are not in effect yet", len(keys)))
		return &resp
	}
	for failed := 1; failed < 1<<len(keys); failed++ {
		world := &pendingWorld{notLanded: map[pendingKey]bool{}}
		for i, k := range keys {
			if failed&(1<<i) != 0 {
				world.notLanded[k] = true
			}
		}
		st := s.state(ctx)
		st.consistent, st.world = w.consistent, world
		if resp, _, done := s.verdict(ctx, st, req, obj, old); done || !resp.Allowed {
			return &resp
		}
	}
	return nil
}

// namespaces are the cluster's namespaces and their labels, as cached; nil until the
// caches have synced.
func (s *Server) namespaces(ctx context.Context) (map[string]map[string]string, error) {
	if !s.Synced.Load() {
		return nil, nil
	}
	var list corev1.NamespaceList
	if err := s.Reader.List(ctx, &list); err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(list.Items))
	for _, ns := range list.Items {
		out[ns.Name] = ns.Labels
	}
	return out, nil
}

func (s *Server) mutate(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	if !s.Synced.Load() {
		// The Pod webhook fails open (see manifests): the validating side still holds MG502.
		return admission.Allowed("").WithWarnings("meshguard is starting: coverage labels were not added to this Pod")
	}
	st := s.state(ctx)
	// Most namespaces ask for no labels: their Pods are answered without being decoded.
	if !s.Engine.LabelsPods(st, req.Namespace) {
		if err := st.Err(); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err))
		}
		return admission.Allowed("")
	}
	obj, _, errResp := decodeRequest(req, nil)
	if errResp != nil {
		return *errResp
	}
	w := obj.(*policy.Workload) // the Pod decoder makes workloads
	labelling := s.Engine.CoverageLabels(st, w)
	if err := st.Err(); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err))
	}
	if labelling == nil {
		return admission.Allowed("")
	}
	// Idempotent: only what is missing is added, so reinvocation changes nothing.
	var patches []jsonpatch.JsonPatchOperation
	if w.Labels == nil {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{}))
	}
	for _, k := range slices.Sorted(maps.Keys(labelling.Labels)) {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(k), labelling.Labels[k]))
	}
	if w.Annotations == nil {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/annotations", map[string]string{}))
	}
	guardrails := strings.Join(labelling.Guardrails, ",")
	patches = append(patches, jsonpatch.NewOperation("add", "/metadata/annotations/"+escapePointer(policy.CoveredByAnnotation), guardrails))
	resp := admission.Patched("", patches...)
	resp.AuditAnnotations = map[string]string{"coverage": labelling.Rule + " " + guardrails}
	return resp
}

// decodeRequest decodes the object and the old object of a request; stored, when given,
// finds the old object in the cache (see decodeOld).
func decodeRequest(req admission.Request, stored storedObject) (obj, old metav1.Object, errResp *admission.Response) {
	fail := func(err error) (metav1.Object, metav1.Object, *admission.Response) {
		r := admission.Errored(http.StatusBadRequest, err)
		return nil, nil, &r
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete:
	default:
		return fail(fmt.Errorf("meshguard does not judge the operation %q", req.Operation))
	}
	kind := kinds.Lookup(req.Kind.Group, req.Kind.Kind)
	if kind == nil {
		return fail(fmt.Errorf("meshguard does not judge %s.%s", req.Kind.Kind, req.Kind.Group))
	}
	if !kind.Serves(req.Kind.Version) {
		return fail(fmt.Errorf("meshguard does not read %s at version %q (it reads %s)", kind, req.Kind.Version, strings.Join(kind.Versions, ", ")))
	}
	var err error
	if obj, err = decode(kind, req.Object); err != nil {
		return fail(err)
	}
	if old, err = decodeOld(kind, req.OldObject, stored); err != nil {
		return fail(err)
	}
	if obj == nil && old == nil {
		return fail(fmt.Errorf("the request carries no object"))
	}
	if obj == nil {
		obj = old
	}
	return obj, old, nil
}

func dryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

// Bounds of a response, whatever the number of findings: the API server keeps warnings
// of 4 KiB in all, and audit annotations go to every audit event of the request.
const (
	maxDenials      = 20
	maxDenialLength = 1024
	maxWarnings     = 10
	maxAudit        = 1024
)

// respond encodes findings: denied when any denies, warnings for the rest, rule IDs in the
// audit log either way; each capped, with what was left out counted. warnOnly (a guardrail's
// enforcementAction: warn) admits what would be denied, its denials shown as warnings; the
// audit log keeps the full verdict.
func respond(findings []policy.Finding, dryRun, warnOnly bool) admission.Response {
	if len(findings) == 0 {
		return admission.Allowed("")
	}
	var denials, warnings []string
	var deniedN, warnedN int
	perRule := map[string]int{}
	var order []string
	for _, f := range findings {
		if f.Suppressed != nil {
			continue // accepted on the object, as check reports it: neither denied nor warned
		}
		key := f.Rule + "=" + string(f.Action)
		if perRule[key] == 0 {
			order = append(order, key)
		}
		perRule[key]++
		if f.Action == policy.Deny && warnOnly {
			if warnedN++; warnedN <= maxWarnings {
				warnings = append(warnings, clip("would deny (enforcementAction: warn): "+warning(f), maxWarningLength))
			}
		} else if f.Action == policy.Deny {
			if deniedN++; deniedN <= maxDenials {
				denials = append(denials, clip(fmt.Sprintf("%s %s at %s: %s. Fix: %s.", f.Rule, f.Name, f.Field, f.Message, f.Fix), maxDenialLength))
			}
		} else if warnedN++; warnedN <= maxWarnings {
			warnings = append(warnings, warning(f))
		}
	}
	if deniedN > maxDenials {
		denials = append(denials, fmt.Sprintf("… and %d more", deniedN-maxDenials))
	}
	if warnedN > maxWarnings {
		warnings = append(warnings, fmt.Sprintf("… and %d more warnings: see `meshguard check`", warnedN-maxWarnings))
	}
	resp := admission.Allowed("")
	if len(denials) > 0 {
		f := findings[0]
		msg := fmt.Sprintf("meshguard denied %s %s/%s:\n- %s", f.Kind, f.Namespace, f.ObjectName, strings.Join(denials, "\n- "))
		if dryRun {
			msg += "\n(dry run: nothing was written)"
		}
		resp = admission.Denied(msg)
		resp.Result.Reason = metav1.StatusReasonForbidden
	}
	if len(order) > 0 {
		resp.AuditAnnotations = map[string]string{"findings": auditFindings(order, perRule)}
	}
	return resp.WithWarnings(warnings...)
}

// auditFindings lists rule=action, with a count where a rule found more than once, in at
// most maxAudit bytes.
func auditFindings(order []string, perRule map[string]int) string {
	var b strings.Builder
	for i, key := range order {
		item := key
		if n := perRule[key]; n > 1 {
			item = fmt.Sprintf("%s*%d", key, n)
		}
		if b.Len()+len(item)+1 > maxAudit-len(",…") {
			b.WriteString(",…")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	return b.String()
}

// warning renders a finding in at most maxWarningLength characters.
func warning(f policy.Finding) string {
	return clip(fmt.Sprintf("%s %s: %s", f.Rule, f.Name, f.Message), maxWarningLength)
}

// clip cuts s to at most n bytes, at a space where one is near, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	limit := n - len("…")
	cut := strings.LastIndex(s[:limit], " ")
	if cut < limit/2 {
		cut = limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut-- // never inside a character
		}
	}
	return s[:cut] + "…"
}

// escapePointer escapes a JSON pointer token (RFC 6901): label keys hold "/".
func escapePointer(s string) string { return pointerEscaper.Replace(s) }

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
