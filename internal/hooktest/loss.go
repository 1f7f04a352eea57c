package hooktest

import (
	"slices"
	"sync"
)

// LossRecorder is a store.LossListener that remembers what it was told,
// for the backends' tests of losses told at once.
type LossRecorder struct {
	mu     sync.Mutex
	causes []error
}

// LockLost implements store.LossListener.
func (r *LossRecorder) LockLost(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.causes = append(r.causes, cause)
}

// Told returns every cause told so far, in order.
func (r *LossRecorder) Told() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.causes)
}

// Count returns how many times the recorder was told, and the last cause.
func (r *LossRecorder) Count() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.causes) == 0 {
		return 0, nil
	}
	return len(r.causes), r.causes[len(r.causes)-1]
}
