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
	"runtime"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/kinds"
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
	// Live: the objects run in a cluster. Their Pods are judged as they are, not labelled
	// first as admission would label new ones.
	Live bool
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
	// Read, if set, reads each object instead of kinds.Kind.Decode from a manifest: the
	// golden tests read fixtures as the webhook does.
	Read func(kind *kinds.Kind, js []byte) (metav1.Object, error)
	// Root is Istio's root namespace (--root-namespace); "" takes istiod's namespace where
	// a manifest holds its Deployment (policy.Snapshot.Root).
	Root string

	bundle *Bundle
	errs   []error
	// files are the inputs read, in order; pending, their documents to decode.
	files   []*file
	pending chan *document
}

// file is one input: its documents, or why it could not be read.
type file struct {
	name string
	err  error
	docs []document
}

// NewBundle returns an empty bundle.
func NewBundle() *Bundle {
	return &Bundle{State: policy.NewSnapshot(), Sources: map[metav1.Object]Source{}}
}

// Load reads files, folders (recursively: .yaml, .yml and .json) and "-" (standard input)
// into one bundle. The error joins every InputError met.
func (l *Loader) Load(paths ...string) (*Bundle, error) {
	l.bundle, l.errs, l.files = NewBundle(), nil, nil
	l.bundle.State.Root = l.Root
	// Documents are decoded as they are read, on every core (parsing YAML is most of what
	// `check` costs), and kept only until decoded; then added in reading order.
	l.pending = make(chan *document, 64)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for doc := range l.pending {
				l.decode(doc)
				doc.data = nil
			}
		})
	}
	for _, p := range paths {
		l.loadPath(p)
	}
	close(l.pending)
	wg.Wait()
	for _, f := range l.files {
		if f.err != nil {
			l.errs = append(l.errs, f.err)
		}
		for i := range f.docs {
			l.merge(&f.docs[i], f.name)
		}
	}
	l.files = nil
	return l.bundle, errors.Join(l.errs...)
}

// failed is an input that could not be read at all.
func (l *Loader) failed(src Source, format string, args ...any) {
	l.files = append(l.files, &file{name: src.File, err: inputError(src, format, args...)})
}

func inputError(src Source, format string, args ...any) error {
	return &InputError{Source: src, Err: fmt.Errorf(format, args...)}
}

func (l *Loader) loadPath(p string) {
	if p == "-" {
		data, err := io.ReadAll(l.Stdin)
		if err != nil {
			l.failed(Source{File: p}, "reading standard input: %w", err)
			return
		}
		l.loadData(p, data)
		return
	}
	info, err := os.Stat(p)
	if err != nil {
		l.failed(Source{File: p}, "%w", unwrapPathError(err))
		return
	}
	if !info.IsDir() {
		l.loadFile(p)
		return
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			l.failed(Source{File: path}, "%w", unwrapPathError(err))
			return nil
		}
		if !d.IsDir() && isManifest(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		l.failed(Source{File: p}, "%w", err)
	}
	if len(files) == 0 {
		l.failed(Source{File: p}, "no .yaml, .yml or .json files in this folder")
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
		l.failed(Source{File: path}, "%w", unwrapPathError(err))
		return
	}
	l.loadData(path, data)
}

// document is one YAML document of a file, and once decoded, what it holds.
type document struct {
	index, line int
	data        []byte

	objects []decoded
	errs    []error
	ignored int
}

// decoded is an object read from a document, and the istiod version a workload runs.
type decoded struct {
	kind   *kinds.Kind
	object metav1.Object
	istiod string
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

func (l *Loader) loadData(name string, data []byte) {
	f := &file{name: name, docs: splitDocuments(data)}
	l.files = append(l.files, f)
	for i := range f.docs {
		if f.docs[i].line != 0 { // nothing but space and comments otherwise
			l.pending <- &f.docs[i]
		}
	}
}

func (l *Loader) decode(doc *document) {
	js, err := yaml.YAMLToJSON(doc.data)
	if err != nil {
		doc.errs = append(doc.errs, fmt.Errorf("not valid YAML: %v", err))
		return
	}
	l.decodeObject(doc, js)
}

// merge adds a decoded document to the bundle, its errors to the loader's, with the file
// named.
func (l *Loader) merge(doc *document, fileName string) {
	if doc.line == 0 {
		return
	}
	l.bundle.Documents++
	l.bundle.Ignored += doc.ignored
	src := Source{File: fileName, Document: doc.index, Line: doc.line}
	for _, err := range doc.errs {
		l.errs = append(l.errs, &InputError{Source: src, Err: err})
	}
	for _, d := range doc.objects {
		l.add(src, d.kind, d.object)
		if d.istiod != "" {
			l.bundle.State.Istiod = append(l.bundle.State.Istiod, d.istiod)
			// istiod's namespace is the mesh's root namespace unless its meshConfig says
			// otherwise (the AKS add-on's aks-istio-system).
			if l.bundle.State.Root == "" {
				l.bundle.State.Root = d.object.GetNamespace()
			}
		}
	}
}

// typeMeta is what every manifest starts with; Items is set on lists.
type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// decodeObject reads the object (or the List of objects) js of a document into it. It
// runs beside others: it touches the document alone.
func (l *Loader) decodeObject(doc *document, js []byte) {
	fail := func(format string, args ...any) { doc.errs = append(doc.errs, fmt.Errorf(format, args...)) }
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return
	}
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		fail("not a Kubernetes object: %v", jsonError(err))
		return
	}
	if tm.Kind == "" {
		fail("the document has no kind")
		return
	}
	if tm.Kind == "List" || strings.HasSuffix(tm.Kind, "List") && tm.Items != nil {
		for _, item := range tm.Items {
			l.decodeObject(doc, item)
		}
		return
	}
	group, version, grouped := strings.Cut(tm.APIVersion, "/")
	if !grouped {
		group, version = "", tm.APIVersion
	}
	kind := kinds.Lookup(group, tm.Kind)
	if kind == nil {
		doc.ignored++
		return
	}
	// The object's name, for messages only: read again only when one is written.
	name := func() string {
		_, n, _, _ := kinds.Identity(js)
		return n
	}
	if !kind.Serves(version) {
		fail("%s %q: apiVersion %q is not served; use %s", tm.Kind, name(), tm.APIVersion, servedVersions(kind))
		return
	}
	read := l.Read
	if read == nil {
		read = func(kind *kinds.Kind, js []byte) (metav1.Object, error) { return kind.Decode(js, kinds.Manifest) }
	}
	o, err := read(kind, js)
	if err != nil {
		fail("%s %q: %v", tm.Kind, name(), err)
		return
	}
	if g, ok := o.(*policy.MeshGuardrail); ok {
		if errs := l.Engine.ValidateGuardrail(g, nil); len(errs) > 0 { // namespaces may come later: MG506 judges each Pod
			fail("%s %q is invalid: %v", tm.Kind, g.Name, errs.ToAggregate())
			return
		}
	}
	d := decoded{kind: kind, object: o}
	if kind.Role == kinds.Workload {
		d.istiod = kinds.IstiodVersion(js)
	}
	doc.objects = append(doc.objects, d)
}

// servedVersions lists a kind's apiVersions for messages.
func servedVersions(k *kinds.Kind) string {
	versions := make([]string, len(k.Versions))
	for i, v := range k.Versions {
		versions[i] = schema.GroupVersion{Group: k.Group, Version: v}.String()
	}
	return strings.Join(versions, " or ")
}

// add puts a decoded object into the bundle. Namespaced objects that name no namespace get
// the loader's, as with kubectl. Policies and workloads are judged; the rest is state.
func (l *Loader) add(src Source, kind *kinds.Kind, o metav1.Object) {
	if !kind.ClusterScoped && o.GetNamespace() == "" {
		o.SetNamespace(l.Namespace)
	}
	l.bundle.State.Add(o)
	l.bundle.Sources[o] = src
	if kind.Role == kinds.Policy || kind.Role == kinds.Workload {
		l.bundle.Objects = append(l.bundle.Objects, o)
	}
}

// jsonError drops Go type names from encoding/json errors, which mean nothing to users.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: expected %s, got %s", te.Field, kinds.Expected(te.Type.Kind()), te.Value)
	}
	return err
}
