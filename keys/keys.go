package keys

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/store"
)

// MaxKeyLen is the longest key, prefix included, that Kannuki accepts, in bytes.
// Longer keys are almost always a bug (a serialized payload used as a key) and
// are rejected with ErrInvalidKey rather than hashed silently.
const MaxKeyLen = 4096

// maxNameLen is the longest MySQL GET_LOCK name; longer keys are hashed (KEYS.md).
const maxNameLen = 64

// Scheme turns a user's key (and the Locker's prefix) into a store.Key.
// Implementations must be deterministic and safe for concurrent use.
type Scheme interface {
	Derive(prefix, key string) (store.Key, error)
}

// Ruby is the default scheme. It derives the same database locks as the
// Ruby kannuki gem, so Go services and Rails applications exclude each other
// on the same key. An empty prefix means no prefix (Ruby would produce "/key").
type Ruby struct{}

// Derive implements Scheme.
func (Ruby) Derive(prefix, key string) (store.Key, error) {
	base, err := joinKey(prefix, key)
	if err != nil {
		return store.Key{}, err
	}
	name := NormalizeName(base)
	return store.Key{String: base, Name: name, ID: RubyID(name)}, nil
}

// Advisory is compatible with the with_advisory_lock Ruby gem: on
// PostgreSQL the two-int4 form (CRC-32 of the name masked to 31 bits,
// Namespace); on MySQL the plain name.
type Advisory struct {
	// Namespace is the second int4 key; 0 by default, as in the gem.
	Namespace int32
}

// Derive implements Scheme.
func (s Advisory) Derive(prefix, key string) (store.Key, error) {
	base, err := joinKey(prefix, key)
	if err != nil {
		return store.Key{}, err
	}
	k1 := int32(crc32.ChecksumIEEE([]byte(base)) & 0x7fffffff)
	return store.Key{String: base, Name: base, Pair: true, K1: k1, K2: s.Namespace}, nil
}

// Raw uses caller-chosen ids, for interop with code that already locks
// fixed ids (migration tools, other services). A key is either a decimal
// int64 ("4242") or two decimal int32 separated by a comma ("1,2"). The
// prefix must be empty: ids are global.
type Raw struct{}

// Derive implements Scheme.
func (Raw) Derive(prefix, key string) (store.Key, error) {
	if prefix != "" {
		return store.Key{}, &Error{Key: key, Reason: "the Raw scheme takes no key prefix"}
	}
	if a, b, ok := strings.Cut(key, ","); ok {
		k1, err1 := strconv.ParseInt(a, 10, 32)
		k2, err2 := strconv.ParseInt(b, 10, 32)
		if err1 != nil || err2 != nil {
			return store.Key{}, &Error{Key: key, Reason: "raw pair must be two int32 like \"1,2\""}
		}
		return store.Key{String: key, Name: key, Pair: true, K1: int32(k1), K2: int32(k2)}, nil
	}
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return store.Key{}, &Error{Key: key, Reason: "raw id must be a decimal int64"}
	}
	return store.Key{String: key, Name: key, ID: id}, nil
}

// joinKey validates key and applies the prefix with the "/" separator.
func joinKey(prefix, key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	if prefix == "" {
		return key, nil
	}
	if err := validKey(prefix); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return "", &Error{Key: e.Key, Reason: "as a key prefix: " + e.Reason}
		}
		return "", err
	}
	base := prefix + "/" + key
	if len(base) > MaxKeyLen {
		return "", &Error{Key: base, Reason: fmt.Sprintf("longer than %d bytes", MaxKeyLen)}
	}
	return base, nil
}

// validKey rejects keys that are almost certainly bugs: empty, huge, invalid
// UTF-8 or containing NUL (which PostgreSQL text and many tools cannot carry).
func validKey(key string) error {
	switch {
	case key == "":
		return &Error{Key: key, Reason: "empty"}
	case len(key) > MaxKeyLen:
		return &Error{Key: key, Reason: fmt.Sprintf("longer than %d bytes", MaxKeyLen)}
	case !utf8.ValidString(key):
		return &Error{Key: key, Reason: "not valid UTF-8"}
	case strings.IndexByte(key, 0) >= 0:
		return &Error{Key: key, Reason: "contains a NUL byte"}
	}
	return nil
}

// NormalizeName applies the KEYS.md rule: a base longer than 64 bytes becomes
// its first 31 code points, ":", and the lowercase hex MD5 of the base.
func NormalizeName(base string) string {
	if len(base) <= maxNameLen {
		return base
	}
	sum := md5.Sum([]byte(base))
	head := base
	n := 0
	for i := range base {
		if n == 31 {
			head = base[:i]
			break
		}
		n++
	}
	return head + ":" + hex.EncodeToString(sum[:])
}

// rubyModulus is 2^63-1, the modulus of the Ruby gem's id derivation.
const rubyModulus = 1<<63 - 1

// RubyID is the PostgreSQL id of a normalized name: MD5 read as a 128-bit
// big-endian unsigned integer, modulo 2^63-1.
func RubyID(name string) int64 {
	sum := md5.Sum([]byte(name))
	hi := binary.BigEndian.Uint64(sum[:8])
	lo := binary.BigEndian.Uint64(sum[8:])
	// hi*2^64 + lo with 2^63 ≡ 1, so 2^64 ≡ 2 (mod 2^63-1).
	return int64(modM(modM(modM(hi)*2) + modM(lo)))
}

// modM reduces x modulo 2^63-1 (x < 2^64): x = a*2^63 + b ≡ a + b.
func modM(x uint64) uint64 {
	r := (x & rubyModulus) + (x >> 63)
	if r >= rubyModulus {
		r -= rubyModulus
	}
	return r
}

// ClassObjID returns the pg_locks columns a bigint advisory lock shows as.
func ClassObjID(id int64) (classid, objid uint32) {
	return uint32(uint64(id) >> 32), uint32(uint64(id))
}
