package webhook

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestConsistentReadsBounded: a review finding every slot taken by others reading from the
// API server waits within its time, then fails closed, having read nothing.
func TestConsistentReadsBounded(t *testing.T) {
	slots := make(chan struct{}, maxConsistentReads)
	for range maxConsistentReads {
		slots <- struct{}{}
	}
	api := &countingReader{}
	reads := &consistentReads{reader: api, slots: slots, namespaces: []string{"shop"}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := reads.view(ctx, nil, "shop"); err == nil || !strings.Contains(err.Error(), "at once") {
		t.Errorf("error %v", err)
	}
	if n := api.n.Load(); n != 0 {
		t.Errorf("%d lists made without a slot", n)
	}
}
