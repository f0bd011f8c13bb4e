package check

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallel calls do(i) for every i in [0, n), on every core. Each call must touch only
// what belongs to its i.
func parallel(n int, do func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				do(i)
			}
		})
	}
	wg.Wait()
}
