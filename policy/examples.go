package policy

import (
	"embed"
	"fmt"
	"strings"
)

// fixtures are the rules' golden fixtures: for each rule, an unsafe form its findings pin
// and a fixed form it finds nothing in. They are the catalog's examples.
//
//go:embed testdata/*.yaml
var fixtures embed.FS

// Examples returns a rule's examples, the unsafe and the fixed form; "" for a rule with
// none.
func Examples(id string) (unsafe, fixed string) {
	read := func(form string) string {
		b, _ := fixtures.ReadFile("testdata/" + id + "-" + form + ".yaml")
		return string(b)
	}
	return read("invalid"), read("valid")
}

// ReadableExamples are Examples for people to read: a line too long to read (a list of a
// thousand values) keeps its start.
func ReadableExamples(id string) (unsafe, fixed string) {
	unsafe, fixed = Examples(id)
	return elideLongLines(unsafe), elideLongLines(fixed)
}

func elideLongLines(s string) string {
	const keep = 160
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if len(l) > 2*keep {
			lines[i] = l[:keep] + fmt.Sprintf(" … (%d more characters)", len(l)-keep)
		}
	}
	return strings.Join(lines, "\n")
}
