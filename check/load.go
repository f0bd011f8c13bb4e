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
	"strconv"
	"strings"
	"sync"

	yamlv3 "go.yaml.in/yaml/v3"
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
	// Skipped is what a folder walk left out, and why.
	Skipped []Skip
	// stdin is standard input as read, by the name sources give it: findings are located
	// in it after it is gone.
	stdin map[string][]byte
}

// Skip is a file or folder a folder walk left out: what is in it is not for meshguard to
// read as it is (a Helm chart, a CI workflow, values, documentation).
type Skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Skip reasons.
const (
	SkipNoObjects = "no Kubernetes objects"
	SkipHelmChart = "a Helm chart"
	// SkipKustomization: a folder walk of a command that judges one bundle meets a
	// kustomization, which only rendered is what is applied.
	SkipKustomization = "a kustomization"
)

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
	// Stdin is read for the path "-"; StdinName, if set, names it in sources.
	Stdin     io.Reader
	StdinName string
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
	// render: kustomizations a folder walk meets are rendered (LoadEach), found.
	render bool
	found  []string
	// seen is where each object was read, by kind, namespace and name.
	seen map[objectKey]Source
	// objects counts the objects read, of every kind.
	objects int
	// files are the inputs read, in order; pending, their documents to decode.
	files   []*file
	pending chan *document
}

// file is one input: its documents, or why it could not be read.
type file struct {
	name string
	err  error
	docs []document
	// walked: found by a folder walk, not named; what is not a Kubernetes object in it is
	// skipped rather than an error.
	walked bool
}

// objectKey names an object as the API server does.
type objectKey struct{ group, kind, namespace, name string }

// NewBundle returns an empty bundle.
func NewBundle() *Bundle {
	return &Bundle{State: policy.NewSnapshot(), Sources: map[metav1.Object]Source{}}
}

// Load reads files, folders (recursively: .yaml, .yml and .json) and "-" (standard input)
// into one bundle. The error joins every InputError met. A folder walk skips the
// kustomizations it meets (SkipKustomization): LoadEach renders them.
func (l *Loader) Load(paths ...string) (*Bundle, error) {
	l.render, l.found = false, nil
	b, err := l.pass(func() {
		for _, p := range paths {
			l.loadPath(p)
		}
	})
	if err == nil && l.objects == 0 {
		err = noObjects(paths)
	}
	return b, err
}

// LoadEach reads paths as Load does into one bundle, and renders each kustomization
// (those given, and those a folder walk meets) into a bundle of its own, as `kubectl
// kustomize` renders it: each overlay is what one apply sends. The plain files' bundle
// is left out when it holds no object and kustomizations were rendered.
func (l *Loader) LoadEach(paths, kustomizations []string) ([]*Bundle, error) {
	l.render, l.found = true, nil
	var bundles []*Bundle
	var errs []error
	objects := 0
	add := func(b *Bundle, err error) {
		bundles, errs, objects = append(bundles, b), append(errs, err), objects+l.objects
	}
	if len(paths) > 0 {
		add(l.pass(func() {
			for _, p := range paths {
				l.loadPath(p)
			}
		}))
	}
	for _, dir := range slices.Concat(kustomizations, l.found) {
		add(l.pass(func() { l.loadKustomization(dir) }))
	}
	if len(bundles) > 1 && bundles[0].Documents == 0 && len(paths) > 0 {
		bundles = bundles[1:]
	}
	err := errors.Join(errs...)
	if err == nil && objects == 0 {
		err = noObjects(slices.Concat(paths, kustomizations))
	}
	return bundles, err
}

func noObjects(paths []string) error {
	return &InputError{Source: Source{File: strings.Join(paths, ", ")}, Err: errors.New("no Kubernetes objects in the input")}
}

// pass reads into a new bundle what feed sends to the loader's files.
func (l *Loader) pass(feed func()) (*Bundle, error) {
	l.bundle, l.errs, l.files, l.seen, l.objects = NewBundle(), nil, nil, map[objectKey]Source{}, 0
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
	feed()
	close(l.pending)
	wg.Wait()
	for _, f := range l.files {
		if f.err != nil {
			l.errs = append(l.errs, f.err)
		}
		skipped := 0
		for i := range f.docs {
			l.merge(&f.docs[i], f.name)
			if f.docs[i].skipped {
				skipped++
			}
		}
		if skipped > 0 && f.err == nil && skipped == countContent(f.docs) {
			l.bundle.Skipped = append(l.bundle.Skipped, Skip{Path: f.name, Reason: SkipNoObjects})
		}
	}
	l.files = nil
	return l.bundle, errors.Join(l.errs...)
}

// countContent counts the documents that are more than space and comments.
func countContent(docs []document) int {
	n := 0
	for _, d := range docs {
		if d.line != 0 {
			n++
		}
	}
	return n
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
		name := p
		if l.StdinName != "" {
			name = l.StdinName
		}
		l.bundle.stdin = map[string][]byte{name: data}
		l.loadData(name, data, false)
		return
	}
	info, err := os.Stat(p)
	if err != nil {
		l.failed(Source{File: p}, "%w", unwrapPathError(err))
		return
	}
	if !info.IsDir() {
		l.loadFile(p, false)
		return
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			l.failed(Source{File: path}, "%w", unwrapPathError(err))
			return nil
		}
		if !d.IsDir() {
			if isManifest(path) {
				files = append(files, path)
			}
			return nil
		}
		switch {
		case path != p && strings.HasPrefix(d.Name(), "."):
			return filepath.SkipDir // .git, and the like: no manifests of the repository's
		case exists(filepath.Join(path, "Chart.yaml")):
			// Templates are not YAML until Helm renders them, with the release's values.
			l.bundle.Skipped = append(l.bundle.Skipped, Skip{Path: path, Reason: SkipHelmChart})
			return filepath.SkipDir
		case isKustomization(path):
			// Its files are bases and patches: what is applied is what kustomize renders.
			if l.render {
				l.found = append(l.found, path)
			} else {
				l.bundle.Skipped = append(l.bundle.Skipped, Skip{Path: path, Reason: SkipKustomization})
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		l.failed(Source{File: p}, "%w", err)
	}
	if len(files) == 0 && len(l.bundle.Skipped) == 0 && len(l.found) == 0 {
		l.failed(Source{File: p}, "no .yaml, .yml or .json files in this folder")
	}
	for _, f := range files {
		l.loadFile(f, true)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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

func (l *Loader) loadFile(path string, walked bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.failed(Source{File: path}, "%w", unwrapPathError(err))
		return
	}
	l.loadData(path, data, walked)
}

// document is one YAML document of a file, and once decoded, what it holds.
type document struct {
	// index is the document's, from 1; start the line of the file its data starts on,
	// line that of its first content.
	index, start, line int
	data               []byte
	// lenient: of a walked file, where a document that is no Kubernetes object is skipped.
	lenient bool

	objects []decoded
	errs    []error
	ignored int
	// skipped: the document is no Kubernetes object, and its file was walked.
	skipped bool
	// source, for a document kustomize rendered, is the file and line its object came from.
	source *Source
	// errLines are the lines of the file errs point at.
	errLines []int
}

// decoded is an object read from a document (kind and object nil for kinds meshguard does
// not judge), its name, and the istiod version a workload runs.
type decoded struct {
	kind   *kinds.Kind
	object metav1.Object
	key    objectKey
	istiod string
}

var separator = regexp.MustCompile(`^---(\s|#|$)`)

// splitDocuments splits a YAML stream at its "---" lines, keeping each document's index and
// the line of its first content (comments skipped) for messages. JSON comes back whole.
func splitDocuments(data []byte) []document {
	var docs []document
	cur := document{index: 1, start: 1}
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
			cur = document{index: cur.index + 1, start: line + 1}
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

func (l *Loader) loadData(name string, data []byte, walked bool) {
	f := &file{name: name, docs: splitDocuments(data), walked: walked}
	l.files = append(l.files, f)
	for i := range f.docs {
		f.docs[i].lenient = walked
		if f.docs[i].line != 0 { // nothing but space and comments otherwise
			l.pending <- &f.docs[i]
		}
	}
}

// yamlLine is a line number in a YAML parser's message.
var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// decode reads a document as kubectl does, duplicate keys refused as its strict field
// validation refuses duplicate fields.
func (l *Loader) decode(doc *document) {
	js, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		if doc.lenient && !looksLikeObject(doc.data) {
			doc.skipped = true // a template, or YAML of another tool's dialect
			return
		}
		// The parser counts lines from the document's start; messages name the file's.
		msg := yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
			return fmt.Sprintf("line %d", n+doc.start-1)
		})
		doc.errs = append(doc.errs, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(msg, "error converting YAML to JSON: ")))
		return
	}
	l.decodeObject(doc, js)
	for _, err := range doc.errs {
		doc.errLines = append(doc.errLines, errorLine(doc, err))
	}
}

// fieldInError finds the field an error of the decoders names: unknown field
// "spec.rules[0]...", or spec.jwtRules[0].issuer: expected string, got ...
var fieldInError = regexp.MustCompile(`(?:unknown field "|: |^)((?:metadata|spec)(?:[.\[][^\s":]*)?)`)

// errorLine is the line of the file an error of a document points at: of the field it
// names where it names one, else of the document.
func errorLine(doc *document, err error) int {
	m := fieldInError.FindStringSubmatch(err.Error())
	if m == nil {
		return doc.line
	}
	var tree yamlv3.Node
	if yamlv3.Unmarshal(doc.data, &tree) != nil || len(tree.Content) != 1 {
		return doc.line
	}
	if line := fieldLine(tree.Content[0], m[1]); line > 0 {
		return line + doc.start - 1
	}
	return doc.line
}

// topLevelKey matches a key of a document's top-level mapping.
var topLevelKey = regexp.MustCompile(`(?m)^(apiVersion|kind):`)

// looksLikeObject tells whether a document that does not parse was meant as a Kubernetes
// object: it has apiVersion and kind at its top level.
func looksLikeObject(data []byte) bool {
	keys := map[string]bool{}
	for _, m := range topLevelKey.FindAllSubmatch(data, -1) {
		keys[string(m[1])] = true
	}
	return len(keys) == 2
}

// merge adds a decoded document to the bundle, its errors to the loader's, with the file
// named.
func (l *Loader) merge(doc *document, fileName string) {
	if doc.line == 0 || doc.skipped {
		return
	}
	l.bundle.Documents++
	l.bundle.Ignored += doc.ignored
	src := Source{File: fileName, Document: doc.index, Line: doc.line}
	if doc.source != nil {
		src = *doc.source
	}
	for i, err := range doc.errs {
		at := src
		if i < len(doc.errLines) && doc.source == nil {
			at.Line = doc.errLines[i]
		}
		l.errs = append(l.errs, &InputError{Source: at, Err: err})
	}
	for _, d := range doc.objects {
		l.objects++
		if d.kind != nil && !d.kind.ClusterScoped && d.key.namespace == "" {
			d.key.namespace = l.Namespace
		}
		// Two objects of one name would be one in the cluster, the last applied: the
		// bundle judged would not be what runs.
		if first, dup := l.seen[d.key]; dup && d.key.name != "" {
			l.errs = append(l.errs, &InputError{Source: src, Err: fmt.Errorf("%s %s is also at %s: the last applied would replace the other", d.key.kind, objectRef(d.key.namespace, d.key.name), first)})
			continue
		}
		l.seen[d.key] = src
		if d.kind == nil {
			continue
		}
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
	if tm.Kind == "" || tm.APIVersion == "" {
		if doc.lenient {
			doc.skipped = true // Chart.yaml, values, a workflow, mkdocs.yml
			return
		}
		if tm.Kind == "" {
			fail("the document has no kind")
		} else {
			fail("%s has no apiVersion", tm.Kind)
		}
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
		ns, name, _, _ := kinds.Identity(js)
		doc.objects = append(doc.objects, decoded{key: objectKey{group, tm.Kind, ns, name}})
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
	if o.GetName() == "" && o.GetGenerateName() == "" {
		fail("%s has no metadata.name", tm.Kind)
		return
	}
	d := decoded{kind: kind, object: o, key: objectKey{group, tm.Kind, o.GetNamespace(), o.GetName()}}
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
