package pgsql

import (
	"errors"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/store"
)

func TestPoolerCheck(t *testing.T) {
	var p PoolerCheck
	if known, _ := p.Known(); known {
		t.Fatal("zero PoolerCheck knows something")
	}
	p.Record(7, 7)
	if known, pooled := p.Known(); !known || pooled {
		t.Fatalf("same process: known %v, pooled %v; want direct", known, pooled)
	}
	p.Record(7, 99)
	if known, pooled := p.Known(); !known || !pooled {
		t.Fatalf("another process announced: known %v, pooled %v; want pooled", known, pooled)
	}
	var unseen PoolerCheck
	unseen.Unseen()
	if known, pooled := unseen.Known(); !known || pooled {
		t.Fatalf("unseen: known %v, pooled %v; want known and not pooled", known, pooled)
	}
	err := p.Refusal("kannukipg", "k")
	if !errors.Is(err, store.ErrUnsupported) || !strings.Contains(err.Error(), "server process 7, announced as 99") {
		t.Fatalf("Refusal = %v", err)
	}
}
