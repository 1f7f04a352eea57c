package store

// Key is a lock key after derivation: what a Backend locks. It is computed once
// per lock, so the unlock always uses exactly the id the lock used. The
// package keys derives it (keys.Ruby is the default scheme).
type Key struct {
	// String is the full key as the user named it, prefix included
	// ("myapp/order/123"). Backends use it for SQL comments, file names and
	// listings; never splice it into SQL.
	String string
	// Name is the normalized name (KEYS.md): String itself when it fits in
	// 64 bytes, else its first 31 characters, ":" and its MD5 in hex. It is
	// the MySQL GET_LOCK name: at most 64 characters under the default
	// scheme (up to 157 bytes when the first 31 characters are 4-byte ones).
	Name string
	// ID is the PostgreSQL advisory lock id (the single-bigint form). It is
	// meaningful when Pair is false.
	ID int64
	// Pair selects the two-int4 PostgreSQL form pg_advisory_lock(K1, K2),
	// a key space distinct from the bigint one.
	Pair bool
	// K1 and K2 are the two int4 keys when Pair is true.
	K1, K2 int32
}
