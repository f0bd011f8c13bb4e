package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/live"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// inputFlags say where check, explain and coverage read the state they judge: manifests
// (-f), or a live cluster (--cluster, read-only: the kinds the webhook watches); the
// guardrails they apply besides (--config), and Istio's root namespace (--root-namespace).
type inputFlags struct {
	files      []string
	cluster    bool
	kubeconfig string
	context    string
	root       string
	config     string
	// stdinName names standard input in messages and reports (--stdin-filename).
	stdinName string
	// notices is where what a folder walk skipped is told (standard error).
	notices io.Writer
}

func (f *inputFlags) addTo(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML file of MeshGuardrail objects to apply")
	fs.StringVar(&f.root, "root-namespace", "", "Istio's root namespace (meshConfig.rootNamespace), where no MeshGuardrail names it (default: the namespace of istiod's Deployment in the input, else istio-system)")
	fs.StringArrayVarP(&f.files, "filename", "f", nil, "file, folder or - (standard input) to read; repeatable")
	fs.BoolVar(&f.cluster, "cluster", false, "read the live cluster instead of files (read-only)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file of --cluster (default: KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "kubeconfig context of --cluster")
	fs.StringVar(&f.stdinName, "stdin-filename", "", "the file name standard input (-f -) is given in messages and reports")
}

// loader reads manifests as these flags say.
func (f *inputFlags) loader(stdin io.Reader, engine *policy.Engine, namespace string) *check.Loader {
	return &check.Loader{Namespace: namespace, Stdin: stdin, StdinName: f.stdinName, Engine: engine, Root: f.root}
}

// read loads paths into a bundle, and tells what a folder walk skipped. The error is the
// loader's (inputFailed makes it an exit).
func (f *inputFlags) read(loader *check.Loader, paths []string) (*check.Bundle, error) {
	bundle, err := loader.Load(paths...)
	if err != nil {
		return nil, err
	}
	f.tell(bundle)
	return bundle, nil
}

// readEach loads paths into a bundle and each kustomization into its own (check.LoadEach),
// and tells what a folder walk skipped.
func (f *inputFlags) readEach(loader *check.Loader, paths, kustomizations []string) ([]*check.Bundle, error) {
	bundles, err := loader.LoadEach(paths, kustomizations)
	if err != nil {
		return nil, err
	}
	f.tell(bundles...)
	return bundles, nil
}

// tell says on notices what the folder walks of bundles skipped.
func (f *inputFlags) tell(bundles ...*check.Bundle) {
	var skips []check.Skip
	for _, b := range bundles {
		skips = append(skips, b.Skipped...)
	}
	if line := skipped(skips); line != "" && f.notices != nil {
		fmt.Fprintln(f.notices, line)
	}
}

// inputFailed is the exit of a run whose input could not be read: 2, an error a line.
func inputFailed(err error) error {
	return &exitError{code: exitUsage, err: inputErrors(err)}
}

// skipped says in one line what a folder walk left out, and why.
func skipped(skips []check.Skip) string {
	var charts, kustomizations, others []string
	for _, s := range skips {
		switch s.Reason {
		case check.SkipHelmChart:
			charts = append(charts, s.Path)
		case check.SkipKustomization:
			kustomizations = append(kustomizations, s.Path)
		default:
			others = append(others, s.Path)
		}
	}
	// A repository has many such files: the first few are named.
	names := func(paths []string) string {
		const shown = 5
		if len(paths) > shown {
			return strings.Join(paths[:shown], ", ") + fmt.Sprintf(" and %d more", len(paths)-shown)
		}
		return strings.Join(paths, ", ")
	}
	var parts []string
	if len(charts) > 0 {
		parts = append(parts, fmt.Sprintf("Helm charts, which are not manifests until rendered (helm template %s | meshguard check -f -): %s", charts[0], names(charts)))
	}
	if len(kustomizations) > 0 {
		parts = append(parts, fmt.Sprintf("kustomizations, which are not manifests until rendered (kubectl kustomize %s | meshguard ... -f -; meshguard check renders them): %s", kustomizations[0], names(kustomizations)))
	}
	if len(others) > 0 {
		parts = append(parts, "files with no Kubernetes object: "+names(others))
	}
	if len(parts) == 0 {
		return ""
	}
	return "meshguard: skipped " + strings.Join(parts, "; ")
}

// input is the state judged, and how to find its workloads.
type input struct {
	bundle *check.Bundle
	// client reads a live cluster; nil offline.
	client client.Reader
}

// load reads the input: the manifests, or the cluster. Objects that name no namespace are
// in namespace.
func (f *inputFlags) load(ctx context.Context, stdin io.Reader, engine *policy.Engine, namespace string) (*input, error) {
	switch {
	case f.cluster && len(f.files) > 0:
		return nil, usageError("give -f PATH or --cluster, not both")
	case !f.cluster && len(f.files) == 0:
		return nil, usageError("no input: give -f PATH (a file, a folder, or - for standard input), or --cluster")
	case !f.cluster:
		loader := f.loader(stdin, engine, namespace)
		bundle, err := f.read(loader, f.files)
		if err != nil {
			return nil, inputFailed(err)
		}
		if err := f.addGuardrails(loader, bundle); err != nil {
			return nil, err
		}
		return &input{bundle: bundle}, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
	if err != nil {
		return nil, usageError("--cluster: %v", err)
	}
	scheme, err := kinds.NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("--cluster: %w", err)
	}
	st, err := live.Read(ctx, c, c.RESTMapper())
	if err != nil {
		return nil, fmt.Errorf("--cluster: reading the cluster: %w", err)
	}
	if st.Root = f.root; st.Root == "" {
		if st.Root, err = live.IstiodNamespace(ctx, c); err != nil {
			return nil, fmt.Errorf("--cluster: reading istiod's namespace: %w", err)
		}
	}
	// The bundle judged: the cluster's policies, and its workloads, one Pod for each.
	bundle := check.NewBundle()
	bundle.State, bundle.Live = st, true
	for _, ns := range st.NamespaceNames() {
		for _, o := range st.RAs[ns] {
			bundle.Objects = append(bundle.Objects, o)
		}
		for _, o := range st.APs[ns] {
			bundle.Objects = append(bundle.Objects, o)
		}
		for _, o := range st.PAs[ns] {
			bundle.Objects = append(bundle.Objects, o)
		}
	}
	for _, w := range live.Owners(products.Covered(st, "")) {
		bundle.Objects = append(bundle.Objects, w)
	}
	if err := f.addGuardrails(&check.Loader{Namespace: namespace, Engine: engine}, bundle); err != nil {
		return nil, err
	}
	return &input{bundle: bundle, client: c}, nil
}

// addGuardrails reads --config, which must hold MeshGuardrails only, into the bundle's
// state; nothing without --config.
func (f *inputFlags) addGuardrails(loader *check.Loader, bundle *check.Bundle) error {
	if f.config == "" {
		return nil
	}
	cfg, err := loader.Load(f.config)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--config: %w", inputErrors(err))}
	}
	if len(cfg.Objects) > 0 {
		obj := cfg.Objects[0]
		return usageError("--config %s: %s holds %s %q; it may hold only MeshGuardrail objects", f.config, cfg.Sources[obj], policy.KindOf(obj), obj.GetName())
	}
	if len(cfg.State.Rails) == 0 {
		return usageError("--config %s: holds no MeshGuardrail", f.config)
	}
	bundle.State.Rails = append(bundle.State.Rails, cfg.State.Rails...)
	return nil
}

// workloads are the workloads of namespace ns ("" for all) to report: offline the Pods and
// pod templates read, live one Pod for each owner.
func (in *input) workloads(ns string) []*policy.Workload {
	if in.client == nil {
		return products.Covered(in.bundle.State, ns)
	}
	var out []*policy.Workload
	for _, o := range in.bundle.Objects {
		if w, ok := o.(*policy.Workload); ok && (ns == "" || w.Namespace == ns) {
			out = append(out, w)
		}
	}
	return out
}

// ingressGateways are the ingress gateways of namespace ns ("" for all) to report: offline
// the Pods and pod templates read, live one Pod for each owner.
func (in *input) ingressGateways(ns string) []*policy.Workload {
	gateways := products.IngressGateways(in.bundle.State, ns)
	if in.client == nil {
		return gateways
	}
	return live.Owners(gateways)
}

// targets finds the workloads to names, KIND/NAMESPACE/NAME: a Pod or pod template by
// kind and name, every workload a Service selects, or (live) the first of a controller.
func (in *input) targets(ctx context.Context, to string) ([]*policy.Workload, error) {
	parts := strings.Split(to, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, fmt.Errorf("--to %q: want KIND/NAMESPACE/NAME, e.g. Deployment/shop/web", to)
	}
	kind, ns, name := parts[0], parts[1], parts[2]
	st := in.bundle.State
	if strings.EqualFold(kind, policy.KindService) {
		for _, svc := range st.Services(ns) {
			if svc.Name == name {
				if len(svc.Spec.Selector) == 0 {
					return nil, fmt.Errorf("--to %s: the Service selects no Pod (no selector)", to)
				}
				ws := st.Workloads(ns, svc.Spec.Selector)
				if in.client != nil {
					ws = live.Owners(ws) // one Pod of each controller
				}
				if len(ws) == 0 {
					return nil, fmt.Errorf("--to %s: the Service selects no workload", to)
				}
				return ws, nil
			}
		}
		return nil, fmt.Errorf("--to %s: no such Service", to)
	}
	for _, w := range st.Workloads(ns, nil) {
		if strings.EqualFold(w.Kind, kind) && w.Name == name {
			return []*policy.Workload{w}, nil
		}
	}
	if in.client != nil && !strings.EqualFold(kind, policy.KindPod) {
		ws, err := live.Controlled(ctx, in.client, st, kind, ns, name)
		if err != nil {
			return nil, fmt.Errorf("--to %s: %w", to, err)
		}
		if len(ws) == 0 {
			return nil, fmt.Errorf("--to %s: it runs no Pod", to)
		}
		return ws[:1], nil
	}
	return nil, fmt.Errorf("--to %s: no such workload", to)
}

// IstiodVersions reads the versions of the cluster's istiod (MG701); none offline, where
// the bundle's istiod Deployment tells them.
func (in *input) IstiodVersions(ctx context.Context) ([]string, error) {
	if in.client == nil {
		return in.bundle.State.Istiod, nil
	}
	return live.IstiodVersions(ctx, in.client)
}
