package check

import (
	"os"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// locateFields points each result at the line of its field in the file its object was
// read from, or of the nearest enclosing field there (a missing audiences: its jwtRules
// entry). A file is read again only if an object of it has findings; standard input is
// kept (Bundle.stdin).
func locateFields(b *Bundle, results []Result) {
	type doc struct {
		file  string
		index int
	}
	trees := map[doc]*yamlv3.Node{}
	split := map[string][]document{}
	for i := range results {
		r := &results[i]
		r.objectLine = r.Line
		if r.File == "" || r.Document == 0 {
			continue
		}
		key := doc{r.File, r.Document}
		tree, seen := trees[key]
		if !seen {
			docs, read := split[r.File]
			if !read {
				data := b.stdin[r.File]
				if data == nil {
					data, _ = os.ReadFile(r.File)
				}
				docs = splitDocuments(data)
				split[r.File] = docs
			}
			if r.Document <= len(docs) {
				var n yamlv3.Node
				if yamlv3.Unmarshal(docs[r.Document-1].data, &n) == nil && len(n.Content) == 1 {
					tree = n.Content[0]
					// The parser counts from the document's start; the file's lines are wanted.
					shift(tree, docs[r.Document-1].start-1)
				}
			}
			trees[key] = tree
		}
		if tree != nil {
			if line := fieldLine(tree, r.Field); line > 0 {
				r.Line = line
			}
		}
	}
}

// shift adds n to the line of every node of a tree.
func shift(node *yamlv3.Node, n int) {
	node.Line += n
	for _, c := range node.Content {
		shift(c, n)
	}
}

// fieldLine is the line of a field path (spec.jwtRules[0].audiences,
// metadata.labels[app]) in a document's tree: of its key in a mapping, of its entry in a
// list; of the nearest enclosing field present where it is not.
func fieldLine(root *yamlv3.Node, path string) int {
	node, line := root, root.Line
	for _, step := range fieldSteps(path) {
		next, at := child(node, step)
		if next == nil {
			break
		}
		node, line = next, at
	}
	return line
}

// fieldSteps splits a field path into keys and bracketed list indexes or map keys:
// spec, jwtRules, [0], audiences; metadata, labels, [meshguard.io/covered].
func fieldSteps(path string) []string {
	var steps []string
	for path != "" {
		end := strings.IndexAny(path, ".[")
		switch {
		case strings.HasPrefix(path, "["):
			end = strings.Index(path, "]") + 1
			if end == 0 {
				end = len(path)
			}
		case end < 0:
			end = len(path)
		}
		if step := path[:end]; step != "" {
			steps = append(steps, step)
		}
		path = strings.TrimPrefix(path[end:], ".")
	}
	return steps
}

// child is the node a step leads to from node, and the line it is named on: a mapping's
// key, or a list's entry; nil where the step leads nowhere.
func child(node *yamlv3.Node, step string) (*yamlv3.Node, int) {
	key, bracketed := strings.CutPrefix(step, "[")
	if bracketed {
		key = strings.TrimSuffix(key, "]")
		if node.Kind == yamlv3.SequenceNode {
			if i, err := strconv.Atoi(key); err == nil && i >= 0 && i < len(node.Content) {
				return node.Content[i], node.Content[i].Line
			}
			return nil, 0
		}
	}
	if node.Kind != yamlv3.MappingNode {
		return nil, 0
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return node.Content[i+1], node.Content[i].Line
		}
	}
	return nil, 0
}
