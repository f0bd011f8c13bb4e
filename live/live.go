// Package live reads the state meshguard judges from a running cluster: the kinds its
// webhook watches, each listed once through the API server, read-only.
package live

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// Read lists every kind the webhook watches that the cluster serves into a snapshot: the
// Istio security policies, guardrails, Namespaces, Services, ServiceEntries, Gateway API
// objects, and Pods as their metadata.
func Read(ctx context.Context, c client.Reader, mapper meta.RESTMapper) (*policy.Snapshot, error) {
	installed, err := kinds.Installed(mapper)
	if err != nil {
		return nil, err
	}
	s := policy.NewSnapshot()
	for _, k := range installed {
		_, list := k.CacheObject()
		if err := c.List(ctx, list); err != nil {
			return nil, fmt.Errorf("listing %s: %w", k, err)
		}
		var objects []metav1.Object
		err := meta.EachListItem(list, func(o runtime.Object) error {
			if obj, ok := o.(metav1.Object); ok {
				objects = append(objects, obj)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		// A State lists objects oldest first, as admission's views do: the oldest
		// PeerAuthentication of a level is the one Istio applies.
		for _, o := range policy.OldestFirst(objects) {
			if pod, ok := o.(*metav1.PartialObjectMetadata); ok {
				s.Add(kinds.PodWorkload(pod))
			} else {
				s.Add(o)
			}
		}
	}
	return s, nil
}

// Controlled returns the Pods of the controller of a kind and name (a Deployment, a
// StatefulSet...) in namespace ns: those its spec.selector matches.
func Controlled(ctx context.Context, c client.Reader, st policy.State, kind, ns, name string) ([]*policy.Workload, error) {
	for _, k := range kinds.All() {
		if !strings.EqualFold(k.Kind, kind) || k.Role != kinds.Workload || k.Kind == policy.KindPod {
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(k.Preferred())
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
			return nil, err
		}
		selector, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
		if err != nil || len(selector) == 0 {
			// A CronJob's Pods carry the labels of its job template.
			selector, _, _ = unstructured.NestedStringMap(u.Object, "spec", "jobTemplate", "spec", "template", "metadata", "labels")
		}
		if len(selector) == 0 {
			return nil, fmt.Errorf("%s %s/%s selects its Pods by no label", k.Kind, ns, name)
		}
		return st.Workloads(ns, selector), nil
	}
	return nil, fmt.Errorf("%q is not a kind of workload", kind)
}

// Owners groups Pods by the workload that owns them (a Deployment through its ReplicaSet,
// a StatefulSet, a DaemonSet, a Job...), one Pod standing for each group, named after its
// owner; a Pod no one owns stands for itself. The Pod standing for a group is the first by
// name, and the groups come in the order of those Pods' names, whatever order the Pods
// were listed in (a cache's differs between replicas, and between passes): what is judged
// of them, and reported, is the same every time.
func Owners(pods []*policy.Workload) []*policy.Workload {
	pods = slices.SortedStableFunc(slices.Values(pods), func(a, b *policy.Workload) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	var out []*policy.Workload
	seen := map[string]bool{}
	for _, p := range pods {
		kind, name := policy.KindPod, p.Name
		if refs := p.GetOwnerReferences(); len(refs) > 0 {
			kind, name = refs[0].Kind, refs[0].Name
			if hash := p.Labels["pod-template-hash"]; kind == "ReplicaSet" && hash != "" && strings.HasSuffix(name, "-"+hash) {
				kind, name = "Deployment", strings.TrimSuffix(name, "-"+hash)
			}
		}
		key := p.Namespace + "/" + kind + "/" + name
		if seen[key] {
			continue
		}
		seen[key] = true
		meta := *p.ObjectMeta
		meta.Name = name
		out = append(out, &policy.Workload{ObjectMeta: &meta, Kind: kind, HostNetwork: p.HostNetwork})
	}
	return out
}

// istiodDeployments lists the istiod Deployments of the cluster (labelled app=istiod, as
// Istio's charts label them).
func istiodDeployments(ctx context.Context, c client.Reader) (*unstructured.UnstructuredList, error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("apps/v1")
	list.SetKind("DeploymentList")
	return list, c.List(ctx, list, client.MatchingLabels{"app": "istiod"})
}

// IstiodNamespace is the namespace of the cluster's istiod, Istio's root namespace unless
// its meshConfig says otherwise; "" where no istiod runs.
func IstiodNamespace(ctx context.Context, c client.Reader) (string, error) {
	list, err := istiodDeployments(ctx, c)
	if err != nil || len(list.Items) == 0 {
		return "", err
	}
	return list.Items[0].GetNamespace(), nil
}

// IstiodVersions reads the versions of the istiod Deployments of the cluster from their
// images.
func IstiodVersions(ctx context.Context, c client.Reader) ([]string, error) {
	list, err := istiodDeployments(ctx, c)
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, d := range list.Items {
		js, err := d.MarshalJSON()
		if err != nil {
			return nil, err
		}
		if v := kinds.IstiodVersion(js); v != "" {
			versions = append(versions, v)
		}
	}
	return versions, nil
}
