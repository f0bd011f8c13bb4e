package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// apiServerFigure creates RequestAuthentications one after another through a real
// kube-apiserver (the local control plane of `make run`), in rounds alternating meshguard's
// webhook configurations, a null webhook on the same server stack, and no webhook, and
// prints the latency of each.
func apiServerFigure(ctx context.Context, o options, out io.Writer) error {
	_, kube, pprofAddress, stop, err := localCluster(ctx, o.cpuProfile != "")
	if err != nil {
		return err
	}
	defer stop()
	vwc, mwc, err := meshguardConfigurations(ctx, kube)
	if err != nil {
		return err
	}
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	// The floor: a webhook on the same server stack that allows everything, registered for
	// the same requests as meshguard's security webhook.
	nullBase, ca, err := startServer(ctx, registerNull)
	if err != nil {
		return err
	}
	null := vwc.DeepCopy()
	null.Name = "meshguard-null"
	null.Annotations = nil
	null.Webhooks = null.Webhooks[:1]
	nullURL := nullBase + nullPath
	null.Webhooks[0].ClientConfig = admregv1.WebhookClientConfig{URL: &nullURL, CABundle: ca}
	modes := []string{"meshguard", "null webhook", "no webhook"}
	configs := map[string][]client.Object{"meshguard": {vwc, mwc}, "null webhook": {null}}
	install := func(mode string, on bool) error { return registered(ctx, kube, on, configs[mode]...) }
	results := map[string][]time.Duration{}
	created, current := 0, "meshguard"
	profiled := make(chan error, 1)
	if pprofAddress != "" {
		// meshguard's own process, during the first round: the creates and the deletes.
		go func() { profiled <- fetchProfile(pprofAddress, o.cpuProfile, 4*time.Second) }()
	} else {
		profiled <- nil
	}
	for round := range o.rounds * len(modes) {
		mode := modes[round%len(modes)]
		if mode != current {
			if err := install(current, false); err != nil {
				return err
			}
			if err := install(mode, true); err != nil {
				return err
			}
			current = mode
			// The API server picks up webhook configurations through its own informer.
			time.Sleep(2 * time.Second)
		}
		for range o.apiserver {
			ra := &securityv1.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("jwt-%d", created), Namespace: "bench"}}
			ra.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", created)}}
			ra.Spec.JwtRules = []*securityapi.JWTRule{{Issuer: "https://idp.example.com", JwksUri: "https://idp.example.com/keys", Audiences: []string{"bench"}}}
			created++
			t0 := time.Now()
			if err := kube.Create(ctx, ra); err != nil {
				return err
			}
			results[mode] = append(results[mode], time.Since(t0))
			// Deleted again, untimed, so every create meets the same namespace.
			if err := kube.Delete(ctx, ra); err != nil {
				return err
			}
		}
	}
	if err := <-profiled; err != nil {
		return fmt.Errorf("profiling meshguard: %w", err)
	}
	fmt.Fprintf(out, "RequestAuthentication creates through kube-apiserver, one at a time (each deleted again, untimed), %d rounds of %d per mode:\n", o.rounds, o.apiserver)
	for _, mode := range modes {
		l := results[mode]
		slices.Sort(l)
		q := func(f float64) time.Duration {
			return l[min(len(l)-1, int(f*float64(len(l))))].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(out, "  %-13s p50 %v  p99 %v  (%d creates)\n", mode, q(0.5), q(0.99), len(l))
	}
	return nil
}

// fetchProfile writes a CPU profile of the meshguard process serving Go's profiles at
// address, taken over the given time.
func fetchProfile(address, file string, over time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", address, int(over.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// moduleRoot is the folder of meshguard's go.mod, searched upwards from here.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s: run from the meshguard repository", dir)
		}
		dir = parent
	}
}

// meshguardConfigurations are the webhook configurations the local cluster registered.
func meshguardConfigurations(ctx context.Context, kube client.Client) (*admregv1.ValidatingWebhookConfiguration, *admregv1.MutatingWebhookConfiguration, error) {
	var vwc admregv1.ValidatingWebhookConfiguration
	var mwc admregv1.MutatingWebhookConfiguration
	if err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &vwc); err != nil {
		return nil, nil, err
	}
	err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &mwc)
	return &vwc, &mwc, err
}

// registered creates webhook configurations (on), or deletes them.
func registered(ctx context.Context, kube client.Client, on bool, configs ...client.Object) error {
	for _, cfg := range configs {
		var err error
		if on {
			cfg.SetResourceVersion("")
			err = kube.Create(ctx, cfg)
		} else {
			err = kube.Delete(ctx, cfg)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
