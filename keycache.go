package kannuki

import (
	"sync"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// keyCache remembers the Keys a Locker derived lately, so that a key used
// over and over (one order, the hourly scheduler) is hashed once: the
// built-in schemes hash with MD5 or CRC-32 and build two strings, about a
// twentieth of an uncontended database lock cycle's client work. It holds
// keyCacheSlots entries, each behind its own mutex and chosen by a cheap
// look at the key, so a stream of ever new keys (order ids) costs a
// locked compare and an overwrite, and allocates nothing. Only the
// built-in schemes are cached: they are pure functions of the prefix and
// the key, which a user's scheme need not be.
type keyCache struct {
	slots [keyCacheSlots]keySlot
}

const keyCacheSlots = 16

type keySlot struct {
	mu  sync.Mutex
	in  string // the key as given to the Locker; "" while empty
	key store.Key
}

// cachable reports whether s derives the same Key from the same input
// every time.
func cachable(s keys.Scheme) bool {
	switch s.(type) {
	case keys.Ruby, keys.Advisory, keys.Raw:
		return true
	}
	return false
}

// slotOf picks key's slot from its length and two of its bytes: keys
// that differ only in their middle share a slot, which only costs misses.
func (c *keyCache) slotOf(key string) *keySlot {
	h := uint(len(key))
	if len(key) > 0 {
		h = h*31 + uint(key[len(key)-1])*7 + uint(key[0])
	}
	return &c.slots[h%keyCacheSlots]
}

// get returns the Key derived from key, if remembered.
func (c *keyCache) get(key string) (store.Key, bool) {
	s := c.slotOf(key)
	s.mu.Lock()
	k, ok := s.key, s.in == key && key != ""
	s.mu.Unlock()
	return k, ok
}

// put remembers that key derives k.
func (c *keyCache) put(key string, k store.Key) {
	s := c.slotOf(key)
	s.mu.Lock()
	s.in, s.key = key, k
	s.mu.Unlock()
}
