package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/webhook"
)

// shape is a synthetic cluster: namespaces of equal size, each with its Pods, Services,
// RequestAuthentications and AuthorizationPolicies, plus a mesh-wide PeerAuthentication and
// a coverage guardrail. Nine namespaces in ten are covered by the guardrail.
type shape struct {
	pods, podsPerNamespace, policiesPerNamespace int
	// writes adds the namespaces writes-0, writes-1… that -writes posts reviews in: the
	// policies that protect web, and the ALLOW policy extra, without Pods.
	writes int
}

const (
	rootNamespace     = "istio-system"
	servicesPerNS     = 5
	coveredLabel      = "mesh"
	uncoveredEveryNth = 10 // ns-9, ns-19, ... are not covered
)

func (s shape) namespaces() int { return (s.pods + s.podsPerNamespace - 1) / s.podsPerNamespace }
func (s shape) policies() int   { return s.namespaces() * s.policiesPerNamespace }

func nsName(i int) string { return fmt.Sprintf("ns-%d", i) }
func covered(i int) bool  { return i%uncoveredEveryNth != uncoveredEveryNth-1 }

var created = metav1.NewTime(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))

func objectMeta(name, ns string, i int) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: ns, UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
		ResourceVersion: "48213", CreationTimestamp: created,
	}
}

// list builds, when an informer lists it, every object of example's kind: nothing is held
// outside the cache, so the heap the cache grows by is the cache's own.
func (s shape) list(example runtime.Object) (runtime.Object, error) {
	n := s.namespaces()
	switch example.(type) {
	case *corev1.Namespace:
		l := &corev1.NamespaceList{Items: []corev1.Namespace{{ObjectMeta: objectMeta(rootNamespace, "", 0)}}}
		for i := range n {
			ns := corev1.Namespace{ObjectMeta: objectMeta(nsName(i), "", i)}
			ns.Labels = map[string]string{corev1.LabelMetadataName: ns.Name, "istio-injection": "enabled"}
			if covered(i) {
				ns.Labels[coveredLabel] = "covered"
			}
			l.Items = append(l.Items, ns)
		}
		for i := range s.writes {
			l.Items = append(l.Items, corev1.Namespace{ObjectMeta: objectMeta(writesNamespace(i), "", n+i)})
		}
		return l, nil
	case *metav1.PartialObjectMetadata:
		l := &metav1.PartialObjectMetadataList{}
		for i := range s.pods {
			l.Items = append(l.Items, s.pod(i))
		}
		return l, nil
	case *corev1.Service:
		l := &corev1.ServiceList{}
		for i := range n * servicesPerNS {
			svc := corev1.Service{ObjectMeta: objectMeta(fmt.Sprintf("app-%d", i%servicesPerNS), nsName(i/servicesPerNS), i)}
			svc.Spec.Selector = map[string]string{"app": svc.Name}
			svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
			if err := applied(&svc); err != nil {
				return nil, err
			}
			l.Items = append(l.Items, svc)
		}
		return l, nil
	case *securityv1.RequestAuthentication:
		l := &securityv1.RequestAuthenticationList{}
		err := s.eachPolicy(func(i, k int, ns string, sel *typeapi.WorkloadSelector) error {
			ra := &securityv1.RequestAuthentication{ObjectMeta: objectMeta(fmt.Sprintf("jwt-%d", k), ns, i)}
			ra.Spec.Selector = sel
			ra.Spec.JwtRules = []*securityapi.JWTRule{{Issuer: "https://idp.example.com", JwksUri: "https://idp.example.com/keys", Audiences: []string{ns}}}
			l.Items = append(l.Items, ra)
			return applied(ra)
		})
		if err == nil {
			l.Items, err = writesPolicies(s, l.Items)
		}
		return l, err
	case *securityv1.AuthorizationPolicy:
		l := &securityv1.AuthorizationPolicyList{}
		err := s.eachPolicy(func(i, k int, ns string, sel *typeapi.WorkloadSelector) error {
			ap := &securityv1.AuthorizationPolicy{ObjectMeta: objectMeta(fmt.Sprintf("require-jwt-%d", k), ns, i)}
			ap.Spec.Selector = sel
			ap.Spec.Rules = []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{RequestPrincipals: []string{"https://idp.example.com/*"}}}}}}
			l.Items = append(l.Items, ap)
			return applied(ap)
		})
		if err == nil {
			l.Items, err = writesPolicies(s, l.Items)
		}
		return l, err
	case *securityv1.PeerAuthentication:
		pa := &securityv1.PeerAuthentication{ObjectMeta: objectMeta("default", rootNamespace, 0)}
		pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
		return &securityv1.PeerAuthenticationList{Items: []*securityv1.PeerAuthentication{pa}}, nil
	case *v1alpha1.MeshGuardrail:
		g := v1alpha1.MeshGuardrail{ObjectMeta: objectMeta("coverage", "", 0)}
		g.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{coveredLabel: "covered"}}
		g.Spec.Coverage = &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}}
		return &v1alpha1.MeshGuardrailList{Items: []v1alpha1.MeshGuardrail{g}}, nil
	}
	return nil, fmt.Errorf("the synthetic cluster has no %T", example)
}

func writesNamespace(i int) string { return fmt.Sprintf("writes-%d", i) }

// writesPolicies appends to items the policies of their kind in the writes namespaces,
// from the manifests -writes applies, at the synthetic cluster's resourceVersion.
func writesPolicies[T client.Object](s shape, items []T) ([]T, error) {
	typ := reflect.TypeFor[T]().Elem()
	for i := range s.writes {
		ns := writesNamespace(i)
		docs := strings.Split(strings.ReplaceAll(protectedWeb, "NS", ns)+"---\n"+policyYAML(ns, "extra", "extra"), "---\n")
		for k, doc := range docs {
			if !strings.Contains(doc, "\nkind: "+typ.Name()+"\n") {
				continue
			}
			o := reflect.New(typ).Interface().(T)
			if err := yaml.Unmarshal([]byte(doc), o); err != nil {
				return nil, fmt.Errorf("%s in %s: %w", typ.Name(), ns, err)
			}
			m := objectMeta(o.GetName(), ns, 1_000_000+i*len(docs)+k) // UIDs apart from the others'
			o.SetUID(m.UID)
			o.SetResourceVersion(m.ResourceVersion)
			o.SetCreationTimestamp(m.CreationTimestamp)
			items = append(items, o)
		}
	}
	return items, nil
}

// applied gives o the annotation `kubectl apply` leaves on what it applies: the object as
// applied, in JSON.
func applied(o client.Object) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
	}
	o.SetAnnotations(map[string]string{corev1.LastAppliedConfigAnnotation: string(b) + "\n"})
	return nil
}

// eachPolicy calls add for the k-th policy of one kind (half of policiesPerNamespace) of
// every namespace, i counting them all; the k-th selects app-k, and by the coverage label
// too where the namespace is covered (MG404). It stops at add's first error.
func (s shape) eachPolicy(add func(i, k int, ns string, sel *typeapi.WorkloadSelector) error) error {
	perNS := s.policiesPerNamespace / 2
	for i := range s.namespaces() * perNS {
		k, nsIndex := i%perNS, i/perNS
		ns := nsName(nsIndex)
		labels := map[string]string{"app": fmt.Sprintf("app-%d", k%servicesPerNS)}
		if covered(nsIndex) {
			labels["enablesecurity"] = ns
		}
		if err := add(i, k, ns, &typeapi.WorkloadSelector{MatchLabels: labels}); err != nil {
			return err
		}
	}
	return nil
}

// pod is the metadata of an injected Pod of a Deployment, as the API server stores it:
// labels, Istio's and Prometheus' annotations, an owner and managed fields.
func (s shape) pod(i int) metav1.PartialObjectMetadata {
	ns, app := i/s.podsPerNamespace, fmt.Sprintf("app-%d", i%servicesPerNS)
	hash := fmt.Sprintf("%010x", i/servicesPerNS)
	p := metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: objectMeta(fmt.Sprintf("%s-%s-%05d", app, hash[:8], i), nsName(ns), i),
	}
	p.GenerateName = app + "-" + hash[:8] + "-"
	p.Labels = map[string]string{
		"app": app, "version": "v1", "pod-template-hash": hash[:8],
		"security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": app, "service.istio.io/canonical-revision": "v1",
	}
	if covered(ns) {
		p.Labels["enablesecurity"] = nsName(ns)
	}
	p.Annotations = map[string]string{
		"kubectl.kubernetes.io/default-container": "app",
		"prometheus.io/scrape":                    "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus",
		"istio.io/rev": "default",
		"sidecar.istio.io/status": `{"initContainers":["istio-validation","istio-proxy"],"containers":null,"volumes":["workload-socket",` +
			`"credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}`,
	}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash[:8],
		UID: types.UID(fmt.Sprintf("11111111-0000-4000-8000-%012d", i/servicesPerNS))}}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},` +
			`"f:pod-template-hash":{},"f:version":{}},"f:ownerReferences":{".":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},` +
			`"f:image":{},"f:name":{},"f:ports":{},"f:resources":{}}},"f:serviceAccountName":{}}}`)}}
	return p
}

// restMapper knows meshguard's kinds without asking an API server.
// installed are the kinds the synthetic cluster serves: no Gateway API.
func installed() []*kinds.Kind {
	k, err := kinds.Installed(restMapper())
	if err != nil {
		panic(err)
	}
	return k
}

func restMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		gvk   schema.GroupVersionKind
		scope meta.RESTScope
	}{
		{corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace},
		{corev1.SchemeGroupVersion.WithKind("Service"), meta.RESTScopeNamespace},
		{corev1.SchemeGroupVersion.WithKind("Namespace"), meta.RESTScopeRoot},
		{securityv1.SchemeGroupVersion.WithKind("RequestAuthentication"), meta.RESTScopeNamespace},
		{securityv1.SchemeGroupVersion.WithKind("AuthorizationPolicy"), meta.RESTScopeNamespace},
		{securityv1.SchemeGroupVersion.WithKind("PeerAuthentication"), meta.RESTScopeNamespace},
		{v1alpha1.GroupVersion.WithKind("MeshGuardrail"), meta.RESTScopeRoot},
	} {
		m.Add(k.gvk, k.scope)
	}
	return m
}

// idleWatch is a watch on a cluster where nothing changes.
type idleWatch struct{ done chan struct{} }

func (w *idleWatch) Stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

func (w *idleWatch) ResultChan() <-chan watch.Event { return make(chan watch.Event) }

// listOnly lists, then watches: the synthetic cluster cannot stream its initial list as a
// watch, which client-go's reflector tries first otherwise.
type listOnly struct{ *toolscache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }

// memory is the heap the cache holds, by what it holds.
type memory struct {
	perPod, perPolicy, viewsPerPod float64
	total, rss                     uint64
}

// startCache fills controller-runtime's informer cache, configured as `meshguard serve`
// configures it (webhook.CacheOptions), from the synthetic cluster instead of an API server:
// the same informers, indexes, transforms and reader, without the network.
//
// The cache runs until ctx is cancelled; wait returns once it has stopped, so that what it
// held can be collected before the next size is measured.
func startCache(ctx context.Context, s shape) (_ cache.Cache, _ memory, wait func(), _ error) {
	scheme, err := kinds.NewScheme()
	if err != nil {
		return nil, memory{}, nil, err
	}
	opts := webhook.CacheOptions()
	opts.Scheme = scheme
	opts.Mapper = restMapper()
	opts.NewInformer = func(_ toolscache.ListerWatcher, example runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
		return toolscache.NewSharedIndexInformer(listOnly{&toolscache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) { return s.list(example) },
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
				return &idleWatch{done: make(chan struct{})}, nil
			},
		}}, example, resync, indexers)
	}
	// Never dialled: the informers list and watch the synthetic cluster.
	c, err := cache.New(&rest.Config{Host: "https://127.0.0.1:1"}, opts)
	if err != nil {
		return nil, memory{}, nil, err
	}
	stopped := make(chan struct{})
	wait = func() { <-stopped }
	go func() { _ = c.Start(ctx); close(stopped) }()
	// Informers added to a started cache start at once; each call waits for its sync.
	sync := func(objs []client.Object) error {
		for _, o := range objs {
			if _, err := c.GetInformer(ctx, o); err != nil {
				return fmt.Errorf("caching %T: %w", o, err)
			}
		}
		return nil
	}
	objs := webhook.CachedObjects(installed())
	var pods, policies, rest []client.Object
	for _, o := range objs {
		switch o.(type) {
		case *metav1.PartialObjectMetadata:
			pods = append(pods, o)
		case *securityv1.RequestAuthentication, *securityv1.AuthorizationPolicy:
			policies = append(policies, o)
		default:
			rest = append(rest, o)
		}
	}
	// The synthetic cluster's one-time costs (the JSON encoders' per-type state, built by
	// applied) fall before the measurement, not on the cache: a one-namespace cluster is
	// listed first.
	for _, o := range []client.Object{&securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}, &corev1.Service{}} {
		if _, err := (shape{pods: 1, podsPerNamespace: 1, policiesPerNamespace: s.policiesPerNamespace}).list(o); err != nil {
			return nil, memory{}, wait, err
		}
	}
	var m memory
	base := heapInUse()
	if err := sync(rest); err != nil {
		return nil, m, wait, err
	}
	before := heapInUse()
	if err := sync(pods); err != nil {
		return nil, m, wait, err
	}
	afterPods := heapInUse()
	if err := sync(policies); err != nil {
		return nil, m, wait, err
	}
	after := heapInUse()
	m.perPod = float64(int64(afterPods)-int64(before)) / float64(s.pods)
	m.perPolicy = float64(int64(after)-int64(afterPods)) / float64(s.policies())
	m.total = after - base
	m.rss = rssBytes()
	return c, m, wait, nil
}
