package check

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/test/bench/manifests"
)

// BenchmarkCheck is `meshguard check` over a generated bundle: parse, load and judge.
// The target: 10,000 objects in under a second, memory linear in the bundle.
func BenchmarkCheck(b *testing.B) {
	engine := policy.NewEngine()
	for _, n := range []int{1000, 10000, 20000} {
		data := manifests.Stream(n)
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				l := &Loader{Namespace: "default", Stdin: bytes.NewReader(data), Engine: engine}
				bun, err := l.Load("-")
				if err != nil {
					b.Fatal(err)
				}
				if r := Run(engine, bun); r.Summary.Deny > 0 {
					b.Fatalf("generated bundle has deny findings: %+v", r.Results[0])
				}
			}
		})
	}
}
