// Package check is `meshguard check`: it loads a bundle of manifests, judges every object
// with the policy engine, and reports the findings for people (text) and CI (JSON, SARIF).
package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/policy"
)

// Source is where an object was read: file ("-" for standard input), the 1-based index of
// the YAML document in it, and the line its content starts on.
type Source struct {
	File     string `json:"file,omitempty"`
	Document int    `json:"document,omitempty"`
	Line     int    `json:"line,omitempty"`
}

func (s Source) String() string {
	return fmt.Sprintf("%s:%d (document %d)", s.File, s.Line, s.Document)
}

// Bundle is a set of manifests read together: the state the engine judges against, and the
// objects to judge, in the order they were read.
type Bundle struct {
	State   *policy.Snapshot
	Objects []metav1.Object
	Sources map[metav1.Object]Source
	// Documents counts the documents read; Ignored, those of kinds meshguard does not judge.
	Documents, Ignored int
}

// InputError is a document or file that could not be read. Loading goes on past it, so that
// one run reports every broken input.
type InputError struct {
	Source Source
	Err    error
}

func (e *InputError) Error() string {
	if e.Source.Document == 0 {
		return fmt.Sprintf("%s: %v", e.Source.File, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Source, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// Loader reads manifests into a bundle.
type Loader struct {
	// Namespace is given to namespaced objects that name none, as kubectl does.
	Namespace string
	// Stdin is read for the path "-".
	Stdin io.Reader
	// Engine validates the guardrails read.
	Engine *policy.Engine

	bundle *Bundle
	errs   []error
}

// NewBundle returns an empty bundle.
func NewBundle() *Bundle {
	return &Bundle{State: policy.NewSnapshot(), Sources: map[metav1.Object]Source{}}
}

// Load reads files, folders (recursively: .yaml, .yml and .json) and "-" (standard input)
// into one bundle. The error joins every InputError met.
func (l *Loader) Load(paths ...string) (*Bundle, error) {
	l.bundle, l.errs = NewBundle(), nil
	for _, p := range paths {
		l.loadPath(p)
	}
	return l.bundle, errors.Join(l.errs...)
}

func (l *Loader) fail(src Source, format string, args ...any) {
	l.errs = append(l.errs, &InputError{Source: src, Err: fmt.Errorf(format, args...)})
}

func (l *Loader) loadPath(p string) {
	if p == "-" {
		data, err := io.ReadAll(l.Stdin)
		if err != nil {
			l.fail(Source{File: p}, "reading standard input: %w", err)
			return
		}
		l.loadData(p, data)
		return
	}
	info, err := os.Stat(p)
	if err != nil {
		l.fail(Source{File: p}, "%w", unwrapPathError(err))
		return
	}
	if !info.IsDir() {
		l.loadFile(p)
		return
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			l.fail(Source{File: path}, "%w", unwrapPathError(err))
			return nil
		}
		if !d.IsDir() && isManifest(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		l.fail(Source{File: p}, "%w", err)
	}
	if len(files) == 0 {
		l.fail(Source{File: p}, "no .yaml, .yml or .json files in this folder")
	}
	for _, f := range files {
		l.loadFile(f)
	}
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s: %w", pe.Op, pe.Err)
	}
	return err
}

func isManifest(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func (l *Loader) loadFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.fail(Source{File: path}, "%w", unwrapPathError(err))
		return
	}
	l.loadData(path, data)
}

// document is one YAML document of a file.
type document struct {
	index, line int
	data        []byte
}

var separator = regexp.MustCompile(`^---(\s|#|$)`)

// splitDocuments splits a YAML stream at its "---" lines, keeping each document's index and
// the line of its first content (comments skipped) for messages. JSON comes back whole.
func splitDocuments(data []byte) []document {
	var docs []document
	cur := document{index: 1}
	var buf bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), len(data)+1)
	line := 0
	for sc.Scan() {
		line++
		if separator.Match(sc.Bytes()) {
			cur.data = slices.Clone(buf.Bytes())
			docs = append(docs, cur)
			buf.Reset()
			cur = document{index: cur.index + 1}
			continue
		}
		if t := bytes.TrimSpace(sc.Bytes()); cur.line == 0 && len(t) > 0 && t[0] != '#' {
			cur.line = line
		}
		buf.Write(sc.Bytes())
		buf.WriteByte('\n')
	}
	cur.data = buf.Bytes()
	return append(docs, cur)
}

func (l *Loader) loadData(file string, data []byte) {
	for _, doc := range splitDocuments(data) {
		if doc.line == 0 { // nothing but space and comments
			continue
		}
		l.bundle.Documents++
		src := Source{File: file, Document: doc.index, Line: doc.line}
		js, err := yaml.YAMLToJSON(doc.data)
		if err != nil {
			l.fail(src, "not valid YAML: %v", err)
			continue
		}
		l.loadObject(src, js)
	}
}

// typeMeta is what every manifest starts with; Items is set on lists.
type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func (l *Loader) loadObject(src Source, js []byte) {
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return
	}
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		l.fail(src, "not a Kubernetes object: %v", jsonError(err))
		return
	}
	if tm.Kind == "" {
		l.fail(src, "the document has no kind")
		return
	}
	if tm.Kind == "List" || strings.HasSuffix(tm.Kind, "List") && tm.Items != nil {
		for _, item := range tm.Items {
			l.loadObject(src, item)
		}
		return
	}
	group, _, _ := strings.Cut(tm.APIVersion, "/")
	if !strings.Contains(tm.APIVersion, "/") {
		group = ""
	}
	decode, known := decoders[group+"/"+tm.Kind]
	if !known {
		l.bundle.Ignored++
		return
	}
	if err := decode(l, src, js); err != nil {
		l.fail(src, "%s: %v", tm.Kind, err)
	}
}

// add puts a decoded object into the bundle. Namespaced objects that name no namespace get
// the loader's, as with kubectl.
func (l *Loader) add(src Source, o metav1.Object) {
	switch o.(type) {
	case *corev1.Namespace, *policy.MeshGuardrail: // cluster-scoped
	default:
		if o.GetNamespace() == "" {
			o.SetNamespace(l.Namespace)
		}
	}
	l.bundle.State.Add(o)
	l.bundle.Sources[o] = src
	switch o.(type) {
	case *policy.RequestAuthentication, *policy.AuthorizationPolicy, *policy.PeerAuthentication, *policy.Workload:
		l.bundle.Objects = append(l.bundle.Objects, o)
	}
}

// jsonError drops Go type names from encoding/json errors, which mean nothing to users.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: expected %s, got %s", te.Field, jsonType(te.Type.Kind().String()), te.Value)
	}
	return err
}

func jsonType(goKind string) string {
	switch goKind {
	case "map", "struct", "ptr":
		return "an object"
	case "slice", "array":
		return "a list"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return "a number"
}

// decoder reads one manifest into the bundle.
type decoder func(l *Loader, src Source, js []byte) error

// decoders, by group/kind, read the manifests the engine judges.
var decoders = map[string]decoder{
	"security.istio.io/RequestAuthentication": istio(func() (metav1.Object, *metav1.ObjectMeta, proto.Message) {
		o := &policy.RequestAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	"security.istio.io/AuthorizationPolicy": istio(func() (metav1.Object, *metav1.ObjectMeta, proto.Message) {
		o := &policy.AuthorizationPolicy{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	"security.istio.io/PeerAuthentication": istio(func() (metav1.Object, *metav1.ObjectMeta, proto.Message) {
		o := &policy.PeerAuthentication{}
		return o, &o.ObjectMeta, &o.Spec
	}),
	"meshguard.io/MeshGuardrail": decodeGuardrail,
	"/Pod":                       workload("Pod"),
	"apps/Deployment":            workload("Deployment"),
	"apps/StatefulSet":           workload("StatefulSet"),
	"apps/DaemonSet":             workload("DaemonSet"),
	"apps/ReplicaSet":            workload("ReplicaSet"),
	"batch/Job":                  workload("Job"),
	"batch/CronJob":              workload("CronJob"),
	"/Service":                   kube[corev1.Service],
	"/Namespace":                 kube[corev1.Namespace],
}

// strict decodes JSON, rejecting fields the type does not have, as kubectl's strict field
// validation does: a misspelt `audience:` must not vanish silently.
func strict(js []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return jsonError(err)
	}
	return nil
}

// istioObject is an Istio resource as stored: Kubernetes metadata around a protobuf spec.
type istioObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
	Status     json.RawMessage   `json:"status"`
}

// istio decodes an Istio resource: its spec strictly, with protojson, as the CRD schema would.
func istio(newObject func() (metav1.Object, *metav1.ObjectMeta, proto.Message)) decoder {
	return func(l *Loader, src Source, js []byte) error {
		var raw istioObject
		if err := strict(js, &raw); err != nil {
			return err
		}
		o, meta, spec := newObject()
		*meta = raw.Metadata
		if len(raw.Spec) > 0 && !bytes.Equal(raw.Spec, []byte("null")) {
			if err := protojson.Unmarshal(raw.Spec, spec); err != nil {
				// protojson puts non-breaking spaces in its messages to keep callers from
				// parsing them; users read them.
				return fmt.Errorf("%q: spec: %s", raw.Metadata.Name, strings.ReplaceAll(err.Error(), "\u00a0", " "))
			}
		}
		l.add(src, o)
		return nil
	}
}

func decodeGuardrail(l *Loader, src Source, js []byte) error {
	g := &policy.MeshGuardrail{}
	if err := strict(js, g); err != nil {
		return err
	}
	if errs := l.Engine.ValidateGuardrail(g); len(errs) > 0 {
		return fmt.Errorf("%q is invalid: %v", g.Name, errs.ToAggregate())
	}
	l.add(src, g)
	return nil
}

func kube[T any, PT interface {
	*T
	metav1.Object
}](l *Loader, src Source, js []byte) error {
	var o PT = new(T)
	if err := json.Unmarshal(js, o); err != nil {
		return jsonError(err)
	}
	l.add(src, o)
	return nil
}

// podSpec is what meshguard reads of a Pod's spec.
type podSpec struct {
	HostNetwork bool `json:"hostNetwork"`
	Containers  []struct {
		Name  string `json:"name"`
		Image string `json:"image"`
	} `json:"containers"`
}

type podTemplate struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     podSpec           `json:"spec"`
}

// workloadManifest covers a Pod and every controller with a pod template.
type workloadManifest struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		podSpec                  // a Pod's own spec
		Template    *podTemplate `json:"template"` // Deployment, StatefulSet, DaemonSet, ReplicaSet, Job
		JobTemplate *struct {    // CronJob
			Spec struct {
				Template *podTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// workload reads a Pod, or a controller's pod template, as the workload policies select.
// An istiod among them tells the control plane's version (MG701).
func workload(kind string) decoder {
	return func(l *Loader, src Source, js []byte) error {
		var m workloadManifest
		if err := json.Unmarshal(js, &m); err != nil {
			return jsonError(err)
		}
		tpl := &podTemplate{Metadata: m.Metadata, Spec: m.Spec.podSpec}
		switch {
		case m.Spec.Template != nil:
			tpl = m.Spec.Template
		case m.Spec.JobTemplate != nil && m.Spec.JobTemplate.Spec.Template != nil:
			tpl = m.Spec.JobTemplate.Spec.Template
		case kind != "Pod":
			return fmt.Errorf("%q has no pod template", m.Metadata.Name)
		}
		w := &policy.Workload{Kind: kind, HostNetwork: tpl.Spec.HostNetwork, ObjectMeta: &metav1.ObjectMeta{
			Name: m.Metadata.Name, Namespace: m.Metadata.Namespace, Labels: tpl.Metadata.Labels, Annotations: tpl.Metadata.Annotations,
		}}
		if v := istiodVersion(tpl.Spec); v != "" {
			l.bundle.State.Istiod = append(l.bundle.State.Istiod, v)
		}
		l.add(src, w)
		return nil
	}
}

// istiodVersion returns the image tag of istiod's discovery container (istio/pilot), or "".
func istiodVersion(spec podSpec) string {
	for _, c := range spec.Containers {
		image, _, _ := strings.Cut(c.Image, "@")
		repo, tag, tagged := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
		if tagged && (repo == "pilot" || c.Name == "discovery" && strings.Contains(repo, "pilot")) {
			return tag
		}
	}
	return ""
}
