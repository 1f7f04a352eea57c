package keys

import (
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// Error reports an unusable key. It matches store.ErrInvalidKey (which is
// kannuki.ErrInvalidKey).
type Error struct {
	Key    string
	Reason string
}

func (e *Error) Error() string {
	k := e.Key
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return fmt.Sprintf("kannuki: invalid key %q: %s", k, e.Reason)
}

// Unwrap makes errors.Is(err, store.ErrInvalidKey) true.
func (e *Error) Unwrap() error { return store.ErrInvalidKey }
