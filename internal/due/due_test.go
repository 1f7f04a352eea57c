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

// TestTimerPerNode: with a timer per node, due nodes fire, removed nodes
// do not, and a node pushed again after a removal fires once, at its new
// time.
func TestTimerPerNode(t *testing.T) {
	fired := make(chan int, 10)
	q := &Queue{TimerPerNode: true, Fire: func(n *Node) { fired <- n.Owner.(int) }}
	nodes := make([]Node, 4)
	now := time.Now()
	for i := range nodes {
		nodes[i].Owner = i
		q.Push(&nodes[i], now.Add(time.Duration(i+1)*2*time.Millisecond))
	}
	q.Remove(&nodes[1])
	q.Remove(&nodes[3])
	q.Push(&nodes[3], time.Now().Add(time.Millisecond))
	got := map[int]int{}
	for range 3 {
		select {
		case i := <-fired:
			got[i]++
		case <-time.After(10 * time.Second):
			t.Fatalf("not every node fell due within 10s: %v", got)
		}
	}
	select {
	case i := <-fired:
		t.Fatalf("node %d fired after the due ones (removed, or fired twice): %v", i, got)
	case <-time.After(20 * time.Millisecond):
	}
	if got[0] != 1 || got[2] != 1 || got[3] != 1 || got[1] != 0 {
		t.Fatalf("fired %v, want nodes 0, 2 and 3 once each", got)
	}
}
