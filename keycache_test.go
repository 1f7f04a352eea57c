package kannuki

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// countingKeys is a user's scheme that counts its calls.
type countingKeys struct{ n *atomic.Int64 }

func (c countingKeys) Derive(prefix, key string) (store.Key, error) {
	c.n.Add(1)
	return keys.Ruby{}.Derive(prefix, key)
}

// TestKeyCacheMatchesScheme: with the cache, every key (many sharing a
// slot, repeated, from many goroutines) derives exactly what the scheme
// derives, bad keys still fail, and only the built-in schemes are cached.
func TestKeyCacheMatchesScheme(t *testing.T) {
	for _, scheme := range []keys.Scheme{keys.Ruby{}, keys.Advisory{Namespace: 7}} {
		l := New(nil, Options{KeyPrefix: "app", Keys: scheme})
		if l.kcache == nil {
			t.Fatalf("%T: not cached", scheme)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					key := fmt.Sprintf("order/%d", (i*7+g)%300) // 300 keys over 16 slots
					got, err := l.Key(key)
					want, werr := scheme.Derive("app", key)
					if err != nil || werr != nil || got != want {
						t.Errorf("%T %q: got %+v, %v; want %+v, %v", scheme, key, got, err, want, werr)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, bad := range []string{"", "a\x00b", string([]byte{0xff})} {
			for range 2 {
				if _, err := l.Key(bad); err == nil {
					t.Errorf("%T: key %q accepted", scheme, bad)
				}
			}
		}
	}

	var n atomic.Int64
	l := New(nil, Options{Keys: countingKeys{&n}})
	for range 3 {
		if _, err := l.Key("same"); err != nil {
			t.Fatal(err)
		}
	}
	if l.kcache != nil || n.Load() != 3 {
		t.Errorf("user scheme: cached %v, %d derivations for 3 calls, want no cache and 3", l.kcache != nil, n.Load())
	}
}
