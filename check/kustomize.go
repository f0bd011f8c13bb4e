package check

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/kinds"
)

// kustomizationFiles are the names kustomize reads a kustomization from.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// isKustomization tells whether a folder holds a kustomization.
func isKustomization(dir string) bool {
	return slices.ContainsFunc(kustomizationFiles, func(name string) bool { return exists(filepath.Join(dir, name)) })
}

// loadKustomization renders the kustomization of dir as `kubectl kustomize` does, each
// object a document whose source is the file (and line) it came from.
func (l *Loader) loadKustomization(dir string) {
	if !isKustomization(dir) {
		l.failed(Source{File: dir}, "no kustomization.yaml in this folder")
		return
	}
	objects, err := render(dir)
	if err != nil {
		l.failed(Source{File: dir}, "kustomize: %v", err)
		return
	}
	f := &file{name: dir}
	for i, o := range objects {
		f.docs = append(f.docs, document{index: i + 1, start: 1, line: 1, data: o.yaml, source: &o.source})
	}
	l.files = append(l.files, f)
	for i := range f.docs {
		l.pending <- &f.docs[i]
	}
}

// rendered is an object kustomize rendered, and where it came from.
type rendered struct {
	yaml   []byte
	source Source
}

// render builds a kustomization with kustomize's defaults, which are kubectl's: files
// only under the kustomization's root, no plugins. Kustomize tracks where each object came
// from; the origin annotation it writes when asked (buildMetadata: [originAnnotations]) is
// asked for here and taken off again unless the kustomization asks for it itself.
func render(dir string) ([]rendered, error) {
	fs := &originTracking{FileSystem: filesys.MakeFsOnDisk()}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fs.root = abs
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		return nil, err
	}
	var out []rendered
	for _, r := range m.Resources() {
		src := Source{File: dir}
		origin, err := r.GetOrigin()
		if err != nil {
			return nil, err
		}
		if origin != nil && origin.Path != "" && origin.Repo == "" {
			src.File = filepath.Join(dir, origin.Path)
			src.Document, src.Line = locate(src.File, r)
		}
		if !fs.asked {
			if err := r.SetOrigin(nil); err != nil {
				return nil, err
			}
			if len(r.GetAnnotations()) == 0 {
				if err := r.SetAnnotations(nil); err != nil {
					return nil, err
				}
			}
		}
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		out = append(out, rendered{yaml: y, source: src})
	}
	return out, nil
}

// locate finds the document of a file an object came from: the one of its kind whose
// name the object's holds (kustomize adds prefixes and suffixes), else the only one of its
// kind. 0 when none is.
func locate(path string, r *resource.Resource) (index, line int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	var ofKind []document
	for _, d := range splitDocuments(data) {
		js, err := yaml.YAMLToJSON(d.data)
		if err != nil {
			continue
		}
		var tm typeMeta
		if yaml.Unmarshal(js, &tm) != nil || tm.Kind != r.GetKind() {
			continue
		}
		ofKind = append(ofKind, d)
		if _, name, _, _ := kinds.Identity(js); name != "" && strings.Contains(r.GetName(), name) {
			return d.index, d.line
		}
	}
	if len(ofKind) == 1 {
		return ofKind[0].index, ofKind[0].line
	}
	return 0, 0
}

// originTracking reads the root kustomization with originAnnotations in its
// buildMetadata, and tells whether it asked for them itself.
type originTracking struct {
	filesys.FileSystem
	root  string
	asked bool
}

func (fs *originTracking) ReadFile(path string) ([]byte, error) {
	data, err := fs.FileSystem.ReadFile(path)
	if err != nil || filepath.Dir(path) != fs.root || !slices.Contains(kustomizationFiles, filepath.Base(path)) {
		return data, err
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return data, nil // kustomize says what is wrong with it
	}
	metadata, _ := k["buildMetadata"].([]any)
	if slices.Contains(metadata, any(types.OriginAnnotations)) {
		fs.asked = true
		return data, nil
	}
	k["buildMetadata"] = append(metadata, types.OriginAnnotations)
	out, err := yaml.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
