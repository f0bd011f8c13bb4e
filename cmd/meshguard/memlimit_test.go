package main

import (
	"errors"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr/funcr"
)

func TestLimitMemory(t *testing.T) {
	const mi = 1 << 20
	const unset = math.MaxInt64
	cases := []struct {
		name  string
		env   map[string]string
		limit memlimit.Provider
		want  int64
		log   string
	}{
		{name: "container limit", limit: memlimit.Limit(512 * mi), want: 512 * mi * 9 / 10, log: "GOMEMLIMIT"},
		{name: "no limit", limit: func() (uint64, error) { return 0, memlimit.ErrNoLimit }, want: unset, log: "no memory limit"},
		{name: "limit unreadable", limit: func() (uint64, error) { return 0, errors.New("no cgroup") }, want: unset, log: "no cgroup"},
		{name: "operator's GOMEMLIMIT", env: map[string]string{"GOMEMLIMIT": "300MiB"}, limit: memlimit.Limit(512 * mi), want: unset},
		{name: "operator's ratio", env: map[string]string{"AUTOMEMLIMIT": "0.5"}, limit: memlimit.Limit(512 * mi), want: 256 * mi},
		{name: "turned off", env: map[string]string{"AUTOMEMLIMIT": "off"}, limit: memlimit.Limit(512 * mi), want: unset},
	}
	previous := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(previous) })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
				unsetenv(t, k)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			debug.SetMemoryLimit(unset)
			var logged strings.Builder
			limitMemory(funcr.New(func(prefix, args string) { logged.WriteString(args) }, funcr.Options{}), c.limit)
			if got := debug.SetMemoryLimit(-1); got != c.want {
				t.Errorf("GOMEMLIMIT = %d, want %d", got, c.want)
			}
			if !strings.Contains(logged.String(), c.log) {
				t.Errorf("logged %q, want it to mention %q", logged.String(), c.log)
			}
		})
	}
}

// unsetenv removes an environment variable for the test, restoring it after.
func unsetenv(t *testing.T, key string) {
	if v, ok := os.LookupEnv(key); ok {
		t.Cleanup(func() { os.Setenv(key, v) })
	}
	os.Unsetenv(key)
}
