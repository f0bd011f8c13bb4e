package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/test/cluster"
	"github.com/meshguard/meshguard/webhook"
)

// writesFigure measures security policy writes through the local control plane of `make
// run`, as a GitOps controller makes them:
//   - `kubectl apply` of one file of n AuthorizationPolicies into a new namespace, with
//     meshguard's webhooks registered and without, alternated over rounds;
//   - 32 `kubectl apply` at once of 10 policies each, over 8 namespaces: every error counted;
//   - policy-write reviews (CREATEs of ALLOW policies, UPDATEs and DELETEs of existing ones,
//     CREATEs of RequestAuthentications) posted from outside to meshguard's webhook URL, and
//     to a bare Go HTTPS handler, alternated.
func writesFigure(ctx context.Context, o options, out io.Writer) error {
	c, kube, pprofAddress, stop, err := localCluster(ctx, o.cpuProfile != "")
	if err != nil {
		return err
	}
	defer stop()
	// meshguard takes the Lease meshguard-judge once ready, and judges on its cache alone
	// 5 s later: the steady state measured here.
	time.Sleep(6 * time.Second)
	vwc, mwc, err := meshguardConfigurations(ctx, kube)
	if err != nil {
		return err
	}
	installed := true
	register := func(want bool) error {
		if want == installed {
			return nil
		}
		if err := registered(ctx, kube, want, vwc, mwc); err != nil {
			return err
		}
		installed = want
		time.Sleep(2 * time.Second) // the API server picks them up through its own informer
		return nil
	}
	kubectl := func(stdin string, args ...string) error {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	}

	// kubectl apply of n policies, with and without meshguard.
	took := map[bool][]time.Duration{}
	for round := range 2 * o.rounds {
		on := round%2 == 0
		if err := register(on); err != nil {
			return err
		}
		ns := fmt.Sprintf("apply-%d", round)
		if err := kubectl(namespaceYAML(ns), "apply", "-f", "-"); err != nil {
			return err
		}
		bundle := policiesYAML(ns, "p", o.writes)
		t0 := time.Now()
		if err := kubectl(bundle, "apply", "-f", "-"); err != nil {
			return err
		}
		took[on] = append(took[on], time.Since(t0))
	}
	fmt.Fprintf(out, "kubectl apply of %d AuthorizationPolicies into a new namespace, %d rounds each, alternated:\n", o.writes, o.rounds)
	for _, on := range []bool{true, false} {
		fmt.Fprintf(out, "  meshguard registered=%-5v %v\n", on, took[on])
	}
	fmt.Fprintf(out, "  median with / without: %.2f\n\n", float64(median(took[true]))/float64(median(took[false])))

	// 32 kubectl apply at once, with meshguard.
	if err := register(true); err != nil {
		return err
	}
	const appliers, perApply, namespaces = 32, 10, 8
	for n := range namespaces {
		if err := kubectl(namespaceYAML(fmt.Sprintf("together-%d", n)), "apply", "-f", "-"); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, appliers)
	t0 := time.Now()
	for i := range appliers {
		wg.Go(func() {
			errs[i] = kubectl(policiesYAML(fmt.Sprintf("together-%d", i%namespaces), fmt.Sprintf("a%d-", i), perApply), "apply", "-f", "-")
		})
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			fmt.Fprintln(out, " ", err)
		}
	}
	fmt.Fprintf(out, "%d kubectl apply at once of %d policies each over %d namespaces: %d failed, %v in all\n\n", appliers, perApply, namespaces, failed, time.Since(t0).Round(time.Millisecond))

	// Reviews posted from outside, in namespaces of four policies each (as the in-process
	// harness's), that protect web.
	for n := range namespaces {
		ns := fmt.Sprintf("writes-%d", n)
		if err := kubectl(namespaceYAML(ns)+"---\n"+strings.ReplaceAll(protectedWeb, "NS", ns)+"---\n"+policyYAML(ns, "extra", "extra"), "apply", "-f", "-"); err != nil {
			return err
		}
	}
	// The API server sends the old object as stored: at its resourceVersion.
	versions := make([]string, namespaces)
	for n := range versions {
		var extra securityv1.AuthorizationPolicy
		if err := kube.Get(ctx, client.ObjectKey{Namespace: fmt.Sprintf("writes-%d", n), Name: "extra"}, &extra); err != nil {
			return err
		}
		versions[n] = extra.ResourceVersion
	}
	reviews, err := writeReviews(versions)
	if err != nil {
		return err
	}
	// The bare handler in a process of its own, as meshguard runs; and in the harness's
	// process, as the floor of earlier rounds was (no process to wake between them).
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshguard-writes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bare, bareCA, stopBare, err := serverProcess(exe, filepath.Join(dir, "bare"), "-serve-bare")
	if err != nil {
		return fmt.Errorf("the bare handler's process: %w", err)
	}
	defer stopBare()
	inHarness, inHarnessCA, err := startBare(ctx)
	if err != nil {
		return err
	}
	// meshguard takes reviews from the API server only: the load presents its certificate.
	apiServer, err := c.APIServerClient()
	if err != nil {
		return err
	}
	e := newEndpoint(c.WebhookURL, o.conns, []tls.Certificate{apiServer}, c.CA, bareCA, inHarnessCA)
	e.bare = bare
	harness := *e
	harness.bare = inHarness
	phases := []struct {
		name string
		e    *endpoint
		t    target
		r    result
	}{{"meshguard", e, meshguardTarget, result{}}, {"bare", e, bareTarget, result{}}, {"bare in the harness", &harness, bareTarget, result{}}}
	for _, p := range phases {
		if _, err := p.e.load(reviews, o.conns, o.warmup, p.t); err != nil {
			return fmt.Errorf("warming up: %w", err)
		}
	}
	profiled := make(chan error, 1)
	if pprofAddress != "" {
		// meshguard's own process, during the first phases.
		go func() { profiled <- fetchProfile(pprofAddress, o.cpuProfile, 2*o.phase) }()
	} else {
		profiled <- nil
	}
	for range o.rounds {
		for i, p := range phases {
			r, err := p.e.load(reviews, o.conns, o.phase, p.t)
			if err != nil {
				return err
			}
			phases[i].r.add(r)
		}
	}
	if err := <-profiled; err != nil {
		return fmt.Errorf("profiling meshguard: %w", err)
	}
	fmt.Fprintf(out, "policy-write reviews posted to meshguard's webhook URL, %d connections, %d × %v phases alternated (%s):\n", o.conns, o.rounds, o.phase, names(reviews))
	for _, p := range phases {
		slices.Sort(p.r.latencies)
		fmt.Fprintf(out, "  %-19s p50 %v  p99 %v  %.0f req/s\n", p.name, p.r.quantile(0.5).Round(time.Microsecond), p.r.quantile(0.99).Round(time.Microsecond), p.r.rate())
	}
	mg := phases[0].r.rate()
	fmt.Fprintf(out, "  throughput meshguard / bare: %.2f (the bare handler in the harness's process: %.2f)\n", mg/phases[1].r.rate(), mg/phases[2].r.rate())
	return nil
}

// localCluster starts the local control plane of `make run` with meshguard serving, and a
// client of it; profiled, meshguard serves Go's profiles at pprofAddress. stop stops it
// and removes its files.
func localCluster(ctx context.Context, profiled bool) (c *cluster.Cluster, kube client.Client, pprofAddress string, stop func(), err error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, nil, "", nil, err
	}
	var serveArgs []string
	if profiled {
		port, err := cluster.FreePort()
		if err != nil {
			return nil, nil, "", nil, err
		}
		pprofAddress = fmt.Sprintf("127.0.0.1:%d", port)
		serveArgs = []string{"--pprof-bind-address", pprofAddress}
	}
	dir, err := os.MkdirTemp("", "meshguard-apiserver-bench-")
	if err != nil {
		return nil, nil, "", nil, err
	}
	if c, err = cluster.Start(ctx, cluster.Options{Root: root, Dir: dir, ServeArgs: serveArgs}); err != nil {
		os.RemoveAll(dir)
		return nil, nil, "", nil, err
	}
	stop = func() { c.Stop(); os.RemoveAll(dir) }
	scheme, err := kinds.NewScheme()
	if err == nil {
		kube, err = client.New(c.Config, client.Options{Scheme: scheme})
	}
	if err != nil {
		stop()
		return nil, nil, "", nil, err
	}
	return c, kube, pprofAddress, stop, nil
}

func namespaceYAML(ns string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns)
}

// policyYAML is an ALLOW policy that requires a token of one issuer for one app: one that
// may open (a CREATE of an ALLOW), so judged with the API server's policies read.
func policyYAML(ns, name, app string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: %s, namespace: %s}
spec:
  selector: {matchLabels: {app: %s}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`, name, ns, app)
}

// policiesYAML is n ALLOW policies, one file.
func policiesYAML(ns, prefix string, n int) string {
	docs := make([]string, n)
	for i := range docs {
		docs[i] = policyYAML(ns, fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("%sapp-%d", prefix, i))
	}
	return strings.Join(docs, "---\n")
}

// protectedWeb is what protects web in a namespace NS: a RequestAuthentication, an ALLOW
// policy that requires its tokens and a DENY policy of requests without one.
const protectedWeb = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-deny-anonymous, namespace: NS}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
`

// writeReviews are AdmissionReviews of policy writes in the namespaces writes-N, as the
// API server sends them: a CREATE of a new ALLOW policy, an UPDATE and a DELETE of the
// ALLOW policy extra, and a CREATE of a RequestAuthentication for another app. Each is
// allowed. Those that may open are dry runs: posted again and again, none of them lands,
// and a real write of an object whose last write has not landed is refused (retry). A dry
// run is judged on the same path, by the leader, and only not recorded.
func writeReviews(versions []string) ([]review, error) {
	ra := `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: api-jwt, namespace: NS}
spec:
  selector: {matchLabels: {app: api}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [api]}]
`
	var out []review
	for n, version := range versions {
		ns := fmt.Sprintf("writes-%d", n)
		existing := strings.Replace(policyYAML(ns, "extra", "extra"), "namespace: "+ns+"}", "namespace: "+ns+", resourceVersion: \""+version+"\"}", 1)
		changed := strings.Replace(existing, "idp.example.com/*", "idp.example.com/team", 1)
		for _, w := range []struct {
			name     string
			op       admissionv1.Operation
			obj, old string
			dry      bool
		}{
			{"ap-create", admissionv1.Create, policyYAML(ns, "new", "new"), "", true},
			{"ap-update", admissionv1.Update, changed, existing, true},
			{"ap-delete", admissionv1.Delete, "", existing, true},
			{"ra-create", admissionv1.Create, strings.Replace(ra, "NS", ns, 1), "", false},
		} {
			body, err := admissionReview(w.op, w.obj, w.old, w.dry)
			if err != nil {
				return nil, err
			}
			out = append(out, review{name: w.name, Path: webhook.ValidatePath, Allowed: true, Review: body})
		}
	}
	return out, nil
}

// admissionReview encodes a review of obj replacing old, YAML manifests ("" for none).
func admissionReview(op admissionv1.Operation, obj, old string, dry bool) ([]byte, error) {
	req := admissionv1.AdmissionRequest{UID: types.UID("bench"), Operation: op, DryRun: &dry}
	for _, m := range []struct {
		manifest string
		into     *[]byte
	}{{obj, &req.Object.Raw}, {old, &req.OldObject.Raw}} {
		if m.manifest == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(m.manifest))
		if err != nil {
			return nil, err
		}
		var o metav1.PartialObjectMetadata
		if err := json.Unmarshal(js, &o); err != nil {
			return nil, err
		}
		gvk := o.GroupVersionKind()
		req.Kind = metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
		req.Resource = metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"}
		req.Namespace, req.Name = o.Namespace, o.Name
		*m.into = js
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
