package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

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
	istiodVersions []string
	development    bool
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook",
		Long: `serve runs meshguard's validating and mutating admission webhooks over HTTPS (TLS 1.2 or later,
HTTP/1.1 only). The certificate and key (tls.crt, tls.key in --cert-dir) are reloaded when they
change. The webhook reads the cluster through read-only watches and never calls out otherwise:
it fetches no jwksUri.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(ctrl.SetupSignalHandler()) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; in a cluster, the Pod's service account is used")
	f.StringVar(&o.host, "host", "", "address to serve the webhooks on (all addresses when empty)")
	f.IntVar(&o.port, "port", 9443, "port to serve the webhooks on")
	f.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder holding tls.crt and tls.key")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint ("0" turns it off)`)
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringSliceVar(&o.istiodVersions, "istiod-version", nil, "version of the running istiod, for MG701; repeatable")
	f.BoolVar(&o.development, "development", false, "human-readable logs instead of JSON")
	return cmd
}

func (o *serveOptions) run(ctx context.Context) error {
	log := zap.New(zap.UseDevMode(o.development))
	ctrl.SetLogger(log)
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return usageError("no cluster to watch: %v", err)
	}
	scheme, err := webhook.NewScheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    o.host,
			Port:    o.port,
			CertDir: o.certDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) {
				c.MinVersion = tls.VersionTLS12
				// HTTP/2 stays off: its Rapid Reset attacks (CVE-2023-44487, CVE-2023-39325).
				c.NextProtos = []string{"http/1.1"}
			}},
		}),
	})
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	for _, obj := range webhook.CachedObjects() {
		if _, err := mgr.GetCache().GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	var synced atomic.Bool
	srv := &webhook.Server{
		Engine:         policy.NewEngine(),
		Reader:         mgr.GetCache(),
		Synced:         &synced,
		IstiodVersions: o.istiodVersions,
		Log:            log.WithName("webhook"),
		Metrics:        webhook.NewMetrics(metrics.Registry),
	}
	ws := mgr.GetWebhookServer()
	ws.Register(webhook.ValidatePath, &ctrlwebhook.Admission{Handler: srv.Validating()})
	ws.Register(webhook.MutatePath, &ctrlwebhook.Admission{Handler: srv.Mutating()})
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready only when the certificate is served and every cache has synced.
	if err := mgr.AddReadyzCheck("webhook", ws.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	go func() {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
			log.Info("caches synced: judging requests")
		}
	}()
	log.Info("meshguard serving", "version", version, "port", o.port, "certDir", o.certDir)
	return mgr.Start(ctx)
}
