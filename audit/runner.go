package audit

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/policy"
)

// settle is how long a pass waits after a change for the changes that come with it (an
// apply of many objects) before judging them all at once.
const settle = 2 * time.Second

// Runner audits the cluster from the webhook's informer cache: a pass soon after the
// security policies, guardrails, Namespaces or Services change, and a full one every
// Interval. Only the leader runs it: every replica serves admission, one writes reports.
type Runner struct {
	Engine *policy.Engine
	// State is the live state admission judges against, read lazily a namespace at a time
	// (webhook.Server.State), and the error of its reads; Client writes the Reports.
	State    func(context.Context) (policy.State, func() error)
	Mapper   meta.RESTMapper
	Client   client.Client
	Interval time.Duration
	// Ready tells whether the caches have synced: no pass runs before.
	Ready   func() bool
	Log     logr.Logger
	Metrics *Metrics
	// Lease elects the replica that audits; nil audits without election.
	Lease *resourcelock.LeaseLock
	// Reports is the --audit-reports value: which kinds of report to write (ReportsFlag).
	Reports string
	kind    schema.GroupVersionKind
	// written is what this replica knows of the reports it wrote or read (Sync).
	written Written

	changed chan struct{}
	mu      sync.Mutex
	// dirty are the namespaces changed since the last pass; all of them where a
	// cluster-scoped object (a guardrail) changed.
	dirty map[string]bool
	all   bool
}

// Changed tells the runner an object it judges against changed: the next pass judges its
// namespace (a Namespace's own), or every namespace for a cluster-scoped object or one of
// Istio's root namespace. It never blocks.
func (r *Runner) Changed(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	r.mu.Lock()
	switch o := obj.(type) {
	case *corev1.Namespace:
		r.mark(o.Name)
	case metav1.Object:
		if o.GetNamespace() == "" {
			r.all = true
		} else {
			r.mark(o.GetNamespace())
		}
	default:
		r.all = true
	}
	r.mu.Unlock()
	select {
	case r.changes() <- struct{}{}:
	default:
	}
}

func (r *Runner) mark(ns string) {
	if r.dirty == nil {
		r.dirty = map[string]bool{}
	}
	r.dirty[ns] = true
}

// take returns the namespaces to judge, nil for all (full: a periodic pass), and forgets
// them.
func (r *Runner) take(full bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	dirty, all := r.dirty, r.all || full
	r.dirty, r.all = nil, false
	if all {
		return nil
	}
	return append([]string{}, slices.Sorted(maps.Keys(dirty))...) // none dirty: none, not nil
}

func (r *Runner) changes() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{}, 1)
	}
	return r.changed
}

// NeedLeaderElection is false: the runner elects its leader itself (Lease), so that a
// replica that loses the lease (the API server away for a while) stops auditing and serves
// on, where the manager's election would end the process.
func (r *Runner) NeedLeaderElection() bool { return false }

// Start runs passes until ctx ends, on the replica that holds the Lease. Where the cluster
// serves no kind of report it may write, it runs none, and says so.
func (r *Runner) Start(ctx context.Context) error {
	kind, err := ReportKind(r.Mapper, r.Reports)
	if err != nil {
		return err
	}
	if kind.Empty() {
		r.Log.Info("the cluster serves neither openreports.io Reports nor wgpolicyk8s.io PolicyReports: auditing is off")
		return nil
	}
	r.kind = kind
	r.Log.Info("auditing into " + kind.GroupKind().String())
	if r.Lease == nil {
		return r.run(ctx)
	}
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: r.Lease, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: r.Lease.LeaseMeta.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					r.Log.Info("leading: auditing", "identity", r.Lease.Identity())
					_ = r.run(ctx)
				},
				OnStoppedLeading: func() { r.Log.Info("not leading: another replica audits", "identity", r.Lease.Identity()) },
			},
		})
		if err != nil {
			return err
		}
		elector.Run(ctx) // until the lease is lost, or ctx ends; then stand again
	}
	return nil
}

// run audits until ctx ends: a pass at once, after each change, and every Interval.
func (r *Runner) run(ctx context.Context) error {
	changes := r.changes()
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	due, full := true, true
	for {
		if due && r.Ready() {
			r.pass(ctx, r.take(full))
			due, full = false, false
		}
		wait := time.Second // until the caches sync
		if !due {
			wait = r.Interval
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			due, full = true, true
		case <-changes:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(settle):
			}
			due = true
		case <-time.After(wait):
		}
	}
}

// pass judges namespaces (nil: every one) as the state holds them, and syncs their
// Reports. A change in Istio's root namespace reaches every namespace: all are judged.
func (r *Runner) pass(ctx context.Context, namespaces []string) {
	start := time.Now()
	st, failed := r.State(ctx)
	if namespaces != nil && slices.Contains(namespaces, st.Settings("").Root) {
		namespaces = nil
	}
	judged := namespaces
	if judged == nil {
		judged = st.NamespaceNames()
	}
	desired := Desired(r.Engine, st, judged)
	if err := failed(); err != nil {
		r.Log.Error(err, "audit: reading the cache")
		return
	}
	writes, err := Sync(ctx, r.Client, r.kind, desired, namespaces, &r.written)
	if err != nil {
		r.Log.Error(err, "audit: writing reports")
		return
	}
	r.Metrics.observe(desired, namespaces, start)
	r.Log.V(1).Info("audit pass", "namespaces", len(judged), "reports", len(desired), "writes", writes, "took", time.Since(start).String())
}

// Metrics are the audit's gauges. A nil *Metrics records nothing.
type Metrics struct {
	findings *prometheus.GaugeVec
	lastPass prometheus.Gauge
}

// NewMetrics registers the audit's gauges with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshguard_audit_findings",
			Help: "Findings on what the cluster runs, as of the last audit pass, by rule, action and namespace.",
		}, []string{"rule", "action", "namespace"}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshguard_audit_last_pass_timestamp_seconds",
			Help: "When the last audit pass began, in seconds since the epoch.",
		}),
	}
	reg.MustRegister(m.findings, m.lastPass)
	return m
}

// observe sets the gauges of namespaces (nil: all) from their reports.
func (m *Metrics) observe(reports []*reportsv1alpha1.Report, namespaces []string, start time.Time) {
	if m == nil {
		return
	}
	if namespaces == nil {
		m.findings.Reset()
	}
	for _, ns := range namespaces {
		m.findings.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	}
	for _, r := range reports {
		for _, res := range r.Results {
			action := policy.Warn
			switch res.Result {
			case "skip":
				continue // suppressed on the object
			case "fail":
				action = policy.Deny
			}
			m.findings.WithLabelValues(res.Policy, string(action), r.Namespace).Inc()
		}
	}
	m.lastPass.Set(float64(start.Unix()))
}
