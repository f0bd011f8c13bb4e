package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshguard/meshguard/audit"
	"github.com/meshguard/meshguard/certs"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/webhook"
)

type serveOptions struct {
	kubeconfig     string
	host           string
	port           int
	certDir        string
	metricsAddr    string
	probeAddr      string
	pprofAddr      string
	istiodVersions []string
	development    bool

	auditInterval time.Duration
	auditReports  string
	peerAddress   string

	selfSigned        bool
	namespace         string
	secret            string
	certHosts         []string
	clientCAFile      string
	webhookConfig     string
	leafValidity      time.Duration
	certCheckInterval time.Duration
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook",
		Long: `serve runs meshguard's validating and mutating admission webhooks over HTTPS (TLS 1.2 or later,
HTTP/1.1 only). The certificate and key (tls.crt, tls.key in --cert-dir) are reloaded when they
change. The webhook reads the cluster through read-only watches and never calls out otherwise:
it fetches no jwksUri. The replica holding the Lease meshguard-audit (in --namespace) audits
what the cluster runs into openreports.io Reports or wgpolicyk8s.io PolicyReports
(--audit-interval, --audit-reports). The replica holding the Lease meshguard-judge judges
every security policy write that may leave a workload less protected; the others forward
those reviews to it at its --peer-address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(ctrl.SetupSignalHandler()) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; in a cluster, the Pod's service account is used")
	f.StringVar(&o.host, "host", "", "address to serve the webhooks on (all addresses when empty)")
	f.IntVar(&o.port, "port", 9443, "port to serve the webhooks on")
	f.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key")
	f.StringVar(&o.clientCAFile, "client-ca-file", "", "CA bundle (PEM) of the client certificate the API server presents to webhooks (its AdmissionConfiguration's kubeConfigFile): reviews from any other client, but meshguard's replicas, are refused at the TLS handshake. Empty: any client that reaches the port may post reviews")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint ("0" turns it off)`)
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringVar(&o.pprofAddr, "pprof-bind-address", "0", `address of Go's /debug/pprof profiles, for diagnosing performance ("0", the default, turns it off)`)
	f.StringSliceVar(&o.istiodVersions, "istiod-version", nil, "version of the running istiod, for MG701; repeatable")
	f.BoolVar(&o.development, "development", false, "human-readable logs instead of JSON")
	f.DurationVar(&o.auditInterval, "audit-interval", 10*time.Minute, "how often the leader re-judges the whole cluster into reports, beside a pass after each change (0 turns auditing off)")
	f.StringVar(&o.auditReports, "audit-reports", "auto", "what the audit writes: auto (openreports.io Reports where the cluster serves them, else wgpolicyk8s.io PolicyReports, else nothing), openreports, wgpolicyk8s, or none")
	f.StringVar(&o.peerAddress, "peer-address", "", "this replica's own HTTPS address, as the other replicas reach it, for the writes they forward while it leads; unique to it (default: https://$POD_IP:port; none: every replica judges its own, against the API server's policies)")
	f.BoolVar(&o.selfSigned, "self-signed", false, "make and rotate a self-signed serving certificate (for clusters without cert-manager)")
	f.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "meshguard-system"), "meshguard's namespace, where --self-signed keeps its Secret")
	f.StringVar(&o.secret, "self-signed-secret", "meshguard-serving-cert", "Secret holding the self-signed CA and serving certificate")
	f.StringSliceVar(&o.certHosts, "self-signed-hosts", nil, "names the serving certificate covers (default: the meshguard Service's DNS names)")
	f.StringVar(&o.webhookConfig, "webhook-configuration", "meshguard", "name of the validating and mutating configurations whose caBundle --self-signed sets")
	f.DurationVar(&o.leafValidity, "self-signed-validity", 90*24*time.Hour, "lifetime of a serving certificate; it is re-issued with a third left")
	f.DurationVar(&o.certCheckInterval, "self-signed-check-interval", time.Hour, "how often --self-signed checks the certificate")
	return cmd
}

func (o *serveOptions) run(ctx context.Context) error {
	log := zap.New(zap.UseDevMode(o.development))
	ctrl.SetLogger(log)
	limitMemory(log, memlimit.FromCgroup)
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return usageError("no cluster to watch: %v", err)
	}
	if o.selfSigned {
		if err := o.bootstrap(ctx, cfg, log); err != nil {
			return err
		}
	}
	scheme, err := kinds.NewScheme()
	if err != nil {
		return err
	}
	fresh := &webhook.Freshness{}
	cacheOptions := webhook.CacheOptions()
	cacheOptions.DefaultWatchErrorHandler = fresh.WatchErrorHandler
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		Cache:                  cacheOptions,
		WebhookServer:          webhook.NewHTTPSServer(o.host, o.port, o.certDir, o.clientCAFile),
	})
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	views := webhook.NewViews(mgr.GetCache())
	reads, err := admissionReader(cfg, mgr)
	if err != nil {
		return err
	}
	var synced atomic.Bool
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var leader *webhook.Leader
	if peer := o.peer(); peer != "" {
		leader = &webhook.Leader{
			Lease: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: o.namespace, Name: "meshguard-judge"},
				Client:     kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: peer},
			},
			CertFile: filepath.Join(o.certDir, certs.CertFile),
			Synced:   synced.Load,
			Log:      log.WithName("leader"),
		}
		if err := mgr.Add(leader); err != nil {
			return err
		}
	}
	srv := &webhook.Server{
		Engine:         policy.NewEngine(),
		Reader:         mgr.GetCache(),
		Views:          views,
		Synced:         &synced,
		IstiodVersions: o.istiodVersions,
		Log:            log.WithName("webhook"),
		Metrics:        webhook.NewMetrics(metrics.Registry),
		Freshness:      fresh,
		APIReader:      reads,
		Leader:         leader,
	}
	ws := mgr.GetWebhookServer()
	srv.Register(ws)
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready only when the certificate is served and every cache has synced and keeps
	// watching, and no longer once shutting down, so that no new review is sent while
	// in-flight ones finish.
	if err := mgr.AddReadyzCheck("webhook", ws.StartedChecker()); err != nil {
		return err
	}
	var waiting atomic.Value // why the caches are not synced yet
	waiting.Store("informer caches have not synced")
	if err := mgr.AddReadyzCheck("caches", func(*http.Request) error {
		switch {
		case ctx.Err() != nil:
			return errors.New("shutting down")
		case !synced.Load():
			return errors.New(waiting.Load().(string))
		}
		return fresh.Stale()
	}); err != nil {
		return err
	}
	go fresh.Watch(ctx, 2*time.Second, func(ctx context.Context) error {
		return kube.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
	if _, ok := audit.ReportsFlag[o.auditReports]; !ok {
		return usageError("--audit-reports %q: want auto, openreports, wgpolicyk8s or none", o.auditReports)
	}
	var auditor *audit.Runner
	if o.auditInterval > 0 && o.auditReports != "none" {
		// Every replica serves admission; the one holding the Lease audits.
		host, _ := os.Hostname()
		auditor = &audit.Runner{
			Engine: srv.Engine, State: srv.State, Mapper: mgr.GetRESTMapper(), Client: mgr.GetClient(),
			Interval: o.auditInterval, Ready: synced.Load, Log: log.WithName("audit"), Metrics: audit.NewMetrics(metrics.Registry),
			Reports: o.auditReports,
			Lease: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: o.namespace, Name: "meshguard-audit"},
				Client:     kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
			},
		}
		if err := mgr.Add(auditor); err != nil {
			return err
		}
	}
	go func() {
		// The cluster may not serve meshguard's kinds yet (Istio's CRDs installed after
		// meshguard, or an Istio older than security.istio.io/v1): meshguard then serves,
		// unready, Pods admitted and security kinds refused, and tries again.
		installed, err := kinds.WaitInstalled(ctx, mgr.GetRESTMapper(), kindsRetryInterval, func(err error) {
			waiting.Store(err.Error())
			log.Info("waiting for the cluster to serve the kinds meshguard watches", "reason", err.Error())
		})
		if err != nil {
			return // shutting down
		}
		if err := watchKinds(ctx, mgr.GetCache(), views, installed, log); err != nil {
			waiting.Store(err.Error())
			log.Error(err, "watching the cluster")
			return
		}
		if auditor != nil {
			if err := auditOnChange(ctx, mgr.GetCache(), installed, auditor); err != nil {
				log.Error(err, "watching the cluster for the audit")
			}
		}
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
			log.Info("caches synced: judging requests")
		}
	}()
	log.Info("meshguard serving", "version", version, "port", o.port, "certDir", o.certDir)
	return mgr.Start(ctx)
}

// peer is this replica's address for the others: --peer-address, else from the Pod's IP.
func (o *serveOptions) peer() string {
	if o.peerAddress != "" {
		return o.peerAddress
	}
	if ip := os.Getenv("POD_IP"); ip != "" {
		return "https://" + net.JoinHostPort(ip, strconv.Itoa(o.port))
	}
	return ""
}

// admissionReader is the uncached client that reviews read the API server through: without
// client-go's default rate limit (5 a second, which would queue every review behind the
// others), as what it may send at once is bounded already by the reviews judged at once
// (Limits.InFlight), each reading at most two namespaces' three policy kinds; the API
// server's Priority and Fairness keeps the rest in check.
func admissionReader(cfg *rest.Config, mgr ctrl.Manager) (client.Reader, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst, cfg.RateLimiter = -1, 0, nil
	cfg.Timeout = webhook.ConsistentReadTimeout
	return client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
}

// kindsRetryInterval is how often meshguard looks again for kinds the cluster does not serve.
const kindsRetryInterval = 10 * time.Second

// watchKinds starts the informers of the installed kinds and the views over them. Kinds
// of optional CRDs the cluster lacks (the Gateway API) are not watched: it has none of
// them. Installing their CRDs later takes a restart.
func watchKinds(ctx context.Context, informers cache.Cache, views *webhook.Views, installed []*kinds.Kind, log logr.Logger) error {
	for _, k := range kinds.Cached() {
		if !slices.Contains(installed, k) {
			log.Info("the cluster does not serve this kind: it has none", "kind", k.String())
		}
	}
	for _, obj := range webhook.CachedObjects(installed) {
		if _, err := informers.GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	return views.Watch(ctx, informers, installed)
}

// auditOnChange tells the auditor of every change of the kinds its reports judge against
// but Pods, whose changes (mostly status) the periodic pass catches.
func auditOnChange(ctx context.Context, informers cache.Cache, installed []*kinds.Kind, auditor *audit.Runner) error {
	changed := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    auditor.Changed,
		UpdateFunc: func(_, updated any) { auditor.Changed(updated) },
		DeleteFunc: auditor.Changed,
	}
	for _, k := range installed {
		if k.Role == kinds.Workload {
			continue
		}
		o, _ := k.CacheObject()
		inf, err := informers.GetInformer(ctx, o, cache.BlockUntilSynced(false))
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(changed); err != nil {
			return err
		}
	}
	return nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// bootstrap makes sure a self-signed serving certificate is in --cert-dir before the
// server starts, and keeps it current while meshguard runs.
func (o *serveOptions) bootstrap(ctx context.Context, cfg *rest.Config, log logr.Logger) error {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	hosts := o.certHosts
	if len(hosts) == 0 {
		hosts = []string{"meshguard." + o.namespace + ".svc", "meshguard." + o.namespace + ".svc.cluster.local"}
	}
	b := &certs.Bootstrap{
		Client: kube, Namespace: o.namespace, Secret: o.secret, Hosts: hosts,
		WebhookConfiguration: o.webhookConfig, CertDir: o.certDir,
		CAValidity: 10 * 365 * 24 * time.Hour, LeafValidity: o.leafValidity,
		Log: log.WithName("self-signed"),
	}
	if err := b.Ensure(ctx); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	go b.Run(ctx, o.certCheckInterval)
	b.WatchWebhooks(ctx)
	return nil
}
