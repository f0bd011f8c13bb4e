package main

import (
	"math"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// memoryLimitRatio is the share of the container's memory limit the Go heap may use; the
// rest is the runtime's own memory and headroom.
const memoryLimitRatio = 0.9

// limitMemory sets the collector's soft memory limit (GOMEMLIMIT) to 90% of the memory
// limit of the container (its cgroup, read through limit). Near the limit the collector
// then works harder instead of letting a large cluster's cache get the webhook OOM-killed,
// while the API server's writes of security resources wait on it. A GOMEMLIMIT set by the
// operator is kept, and AUTOMEMLIMIT sets another ratio, or "off". Not finding a limit is
// no reason not to serve: the error is logged and the collector keeps its default.
func limitMemory(log logr.Logger, limit memlimit.Provider) {
	set, err := memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(memoryLimitRatio))
	switch {
	case err != nil:
		log.Info("no memory limit found; the collector keeps its default pacing", "reason", err.Error())
	case set == math.MaxInt64:
		log.Info("no memory limit; the collector keeps its default pacing")
	default:
		log.Info("collector's soft memory limit set", "GOMEMLIMIT", set)
	}
}
