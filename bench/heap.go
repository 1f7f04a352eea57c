package bench

import (
	"context"
	"math"
	"os"
	"runtime"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

func nan() float64 { return math.NaN() }

// HeapStats is the heap one held lock costs.
type HeapStats struct {
	Name    string
	Locks   int
	PerLock float64 // bytes of live heap per held lock
	Note    string
	Err     error
}

// heapAlloc is the live heap after two collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// holdMany acquires keys with l and returns the per-lock growth of the
// live heap, releasing everything before it returns.
func holdMany(ctx context.Context, l *kannuki.Locker, keys []string) (float64, error) {
	hs := make([]*kannuki.Handle, 0, len(keys))
	defer func() {
		for _, h := range hs {
			_ = h.Release(context.Background())
		}
	}()
	before := heapAlloc()
	for _, k := range keys {
		h, err := l.Acquire(ctx, k)
		if err != nil {
			return nan(), err
		}
		hs = append(hs, h)
	}
	after := heapAlloc()
	runtime.KeepAlive(hs)
	return (float64(after) - float64(before)) / float64(len(keys)), nil
}

// warm holds n locks at once with l and releases them, so that every
// connection of the pool is open and has run Kannuki's statements (and
// cached them) before the heap is measured.
func warm(ctx context.Context, l *kannuki.Locker, env Env, n int) error {
	_, err := holdMany(ctx, l, heapKeys(env, "warm", n))
	return err
}

func heapKeys(env Env, what string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = env.Key("heap", what, i)
	}
	return keys
}

// RunHeap measures the heap per held lock on kannukimem and kannukifile
// (memLocks locks) and on PostgreSQL (dbLocks locks on a pool of dbLocks
// connections, opened beforehand and, for pgx, also cold, which counts the
// connections' own memory; kannukipg holds one connection per lock,
// kannukipgxv5 multiplexes them onto fewer).
func RunHeap(ctx context.Context, env Env, memLocks, dbLocks int) []*HeapStats {
	var out []*HeapStats
	add := func(name string, n int, note string, f func(keys []string) (float64, error)) {
		hs := &HeapStats{Name: name, Locks: n, Note: note}
		hs.PerLock, hs.Err = f(heapKeys(env, name, n))
		out = append(out, hs)
	}
	add(NameMem, memLocks, "Handle, lease, keepalive timer and the table entry", func(keys []string) (float64, error) {
		return holdMany(ctx, kannuki.New(kannukimem.New(), kannuki.Options{}), keys)
	})
	add(NameFile, memLocks, "plus one open file per lock", func(keys []string) (float64, error) {
		dir, err := benchDir(env, "heap")
		if err != nil {
			return nan(), err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		be, err := kannukifile.New(dir, kannukifile.Options{})
		if err != nil {
			return nan(), err
		}
		defer func() { _ = be.Close() }()
		return holdMany(ctx, kannuki.New(be, kannuki.Options{}), keys)
	})
	add(NamePgxv5+", warm pool", dbLocks, "Kannuki's own share: the connections and their statement caches existed before", func(keys []string) (float64, error) {
		pool, err := env.PgxPool(ctx, len(keys))
		if err != nil {
			return nan(), err
		}
		defer pool.Close()
		l := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{})
		if err := warm(ctx, l, env, len(keys)); err != nil {
			return nan(), err
		}
		return holdMany(ctx, l, keys)
	})
	add(NamePgxv5+", cold pool", dbLocks, "includes opening the pgx connections the locks use", func(keys []string) (float64, error) {
		pool, err := env.PgxPool(ctx, len(keys))
		if err != nil {
			return nan(), err
		}
		defer pool.Close()
		return holdMany(ctx, kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{}), keys)
	})
	add(NamePGStdlib+", warm pool", dbLocks, "Kannuki's own share, database/sql's *sql.Conn included", func(keys []string) (float64, error) {
		db, err := env.PostgresDB(ctx, "pgx", len(keys))
		if err != nil {
			return nan(), err
		}
		defer func() { _ = db.Close() }()
		l := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{})
		if err := warm(ctx, l, env, len(keys)); err != nil {
			return nan(), err
		}
		return holdMany(ctx, l, keys)
	})
	return out
}
