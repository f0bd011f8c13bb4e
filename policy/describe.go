package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
)

// describe names workloads for messages: a few by name, or what a virtual one stands for,
// in Istio's terms (a policy of the root namespace covers the mesh), never by the labels
// meshguard gives virtual workloads.
func (c *Context) describe(ws []*Workload) string {
	if len(ws) == 1 && ws[0].Virtual {
		w := ws[0]
		where := "namespace " + w.Namespace
		if w.Namespace == c.Settings.Root {
			where = "the mesh (root namespace " + w.Namespace + ")"
		}
		switch {
		case w.Labels[mesh.TargetLabel] != "":
			kind, name, _ := strings.Cut(w.Labels[mesh.TargetLabel], ".")
			return fmt.Sprintf("the workloads behind %s %s/%s, through its waypoint", kind, w.Namespace, name)
		case w.Labels[mesh.GatewayNameLabel] != "":
			return fmt.Sprintf("the Pods of Gateway %s/%s", w.Namespace, w.Labels[mesh.GatewayNameLabel])
		case len(w.Labels) == 0:
			return "every workload of " + where
		}
		return fmt.Sprintf("workloads labelled %s in %s", labelString(w.Labels), where)
	}
	// The first by name: the order a cache lists workloads in differs between replicas and
	// passes, and a message must not (the audit rewrites a report whose message changed).
	// A mesh-wide policy names 100,000 of them: the first few are picked, not all sorted.
	const shown = 3
	byName := func(a, b *Workload) int {
		if c := cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(dataplane.NamespaceOf(a), dataplane.NamespaceOf(b))); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	}
	var first []*Workload
	for _, w := range ws {
		i, _ := slices.BinarySearchFunc(first, w, byName)
		if i < shown {
			first = slices.Insert(first, i, w)[:min(len(first)+1, shown)]
		}
	}
	var names []string
	for _, w := range first {
		names = append(names, fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name))
	}
	if len(ws) > shown {
		names = append(names, fmt.Sprintf("%d more", len(ws)-shown))
	}
	return strings.Join(names, ", ")
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range mesh.SortedKeys(l) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
