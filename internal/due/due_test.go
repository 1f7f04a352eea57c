package due

import (
	"sync"
	"testing"
	"time"
)

func TestQueueFiresInOrderAndRemoves(t *testing.T) {
	var mu sync.Mutex
	var fired []int
	done := make(chan struct{}, 10)
	q := &Queue{Fire: func(n *Node) {
		mu.Lock()
		fired = append(fired, n.Owner.(int))
		mu.Unlock()
		done <- struct{}{}
	}}
	nodes := make([]Node, 5)
	now := time.Now()
	for i := range nodes {
		nodes[i].Owner = i
		q.Push(&nodes[i], now.Add(time.Duration(i+1)*5*time.Millisecond))
	}
	q.Remove(&nodes[2])
	q.Remove(&nodes[2]) // twice: harmless
	for range 4 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("not every node fell due within 10s")
		}
	}
	mu.Lock()
	got := append([]int(nil), fired...)
	mu.Unlock()
	want := []int{0, 1, 3, 4}
	if len(got) != len(want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("fired %v, want %v", got, want)
		}
	}
	// The queue is empty and disarmed; a new push arms it again.
	var n Node
	n.Owner = 9
	q.Push(&n, time.Now())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a push after the queue emptied never fell due")
	}
}
