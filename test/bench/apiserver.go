package main

import (
	"context"
	"fmt"
	"io"
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

	"github.com/meshguard/meshguard/test/cluster"
	"github.com/meshguard/meshguard/webhook"
)

// apiServerFigure creates RequestAuthentications one after another through a real
// kube-apiserver (the local control plane of `make run`), alternating rounds with meshguard's
// webhook configurations registered and removed, and prints the latency of each.
func apiServerFigure(ctx context.Context, o options, out io.Writer) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshguard-apiserver-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(ctx, cluster.Options{Root: root, Dir: dir})
	if err != nil {
		return err
	}
	defer c.Stop()
	scheme, err := webhook.NewScheme()
	if err != nil {
		return err
	}
	kube, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	var vwc admregv1.ValidatingWebhookConfiguration
	var mwc admregv1.MutatingWebhookConfiguration
	if err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &vwc); err != nil {
		return err
	}
	if err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &mwc); err != nil {
		return err
	}
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	register := func(on bool) error {
		for _, cfg := range []client.Object{&vwc, &mwc} {
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
		// The API server picks up webhook configurations through its own informer.
		time.Sleep(2 * time.Second)
		return nil
	}
	results := map[bool][]time.Duration{}
	created := 0
	for round := range 2 * o.rounds {
		with := round%2 == 0
		if round > 0 {
			if err := register(with); err != nil {
				return err
			}
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
			results[with] = append(results[with], time.Since(t0))
		}
	}
	fmt.Fprintf(out, "RequestAuthentication creates through kube-apiserver, one at a time, %d rounds of %d each way:\n", o.rounds, o.apiserver)
	for _, with := range []bool{true, false} {
		l := results[with]
		slices.Sort(l)
		q := func(f float64) time.Duration {
			return l[min(len(l)-1, int(f*float64(len(l))))].Round(10 * time.Microsecond)
		}
		name := map[bool]string{true: "with meshguard", false: "without meshguard"}[with]
		fmt.Fprintf(out, "  %-18s p50 %v  p99 %v  (%d creates)\n", name, q(0.5), q(0.99), len(l))
	}
	return nil
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
