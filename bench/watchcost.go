package bench

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

// The socket watch's cost: each backend with its watch on against the same
// backend with Options.NoWatch, on the same single connection, in blocks
// that alternate as in section 1b. The watch arms the held connection's
// socket after the grant and disarms it before the unlock: two epoll_ctl
// calls per cycle, no goroutine.

// watchFamilies opens one family per watched backend, each with two
// candidates on one pooled connection: watch on, then off.
func watchFamilies(ctx context.Context, env Env) []*Family {
	var out []*Family
	if pool, err := env.PgxPool(ctx, 1); err == nil {
		out = append(out, &Family{Name: NamePgxv5, close: pool.Close, Candidates: []Candidate{
			withLock(NamePgxv5, "", env.Key("watch", "pgxv5"), kannukipgxv5.New(pool, kannukipgxv5.Options{})),
			withLock(NamePgxv5+" NoWatch", "", env.Key("watch", "pgxv5", "off"), kannukipgxv5.New(pool, kannukipgxv5.Options{NoWatch: true})),
		}})
	} else {
		out = append(out, &Family{Name: NamePgxv5, Err: err})
	}
	if db, err := env.PostgresDB(ctx, "pgx", 1); err == nil {
		out = append(out, &Family{Name: NamePGStdlib, close: func() { _ = db.Close() }, Candidates: []Candidate{
			withLock(NamePGStdlib, "", env.Key("watch", "stdlib"), kannukipg.New(db, kannukipg.Options{})),
			withLock(NamePGStdlib+" NoWatch", "", env.Key("watch", "stdlib", "off"), kannukipg.New(db, kannukipg.Options{NoWatch: true})),
		}})
	} else {
		out = append(out, &Family{Name: NamePGStdlib, Err: err})
	}
	d := &kannukimysql.Dialer{}
	if db, err := env.mysqlDialed(ctx, d); err == nil {
		name := NameMySQL + " + Dialer"
		out = append(out, &Family{Name: name, close: func() { _ = db.Close() }, Candidates: []Candidate{
			withLock(name, "", env.Key("watch", "mysql"), kannukimysql.New(db, kannukimysql.Options{Dialer: d})),
			withLock(name+" NoWatch", "", env.Key("watch", "mysql", "off"), kannukimysql.New(db, kannukimysql.Options{Dialer: d, NoWatch: true})),
		}})
	} else {
		out = append(out, &Family{Name: NameMySQL + " + Dialer", Err: err})
	}
	return out
}

// mysqlDialed opens a pool of one connection that dials through d.
func (e Env) mysqlDialed(ctx context.Context, d *kannukimysql.Dialer) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(e.MySQLDSN)
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = d.DialNetwork
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return pinged(ctx, sql.OpenDB(conn), 1)
}

// RunWatchCost times every watched backend against itself with NoWatch
// (in each PairStats, Kannuki is the watch on and Floor the watch off):
// rounds rounds of one block of n cycles each, the order swapping every
// round, after one untimed warm-up round.
func RunWatchCost(ctx context.Context, env Env, rounds, n int, progress func(string)) ([]*PairStats, map[string]error) {
	fams := watchFamilies(ctx, env)
	defer func() {
		for _, f := range fams {
			f.Close()
		}
	}()
	var out []*PairStats
	down := map[string]error{}
	for _, f := range fams {
		if f.Err != nil {
			down[f.Name] = f.Err
			continue
		}
		on, off := f.Candidates[0], f.Candidates[1]
		progress(fmt.Sprintf("watch cost: %s", f.Name))
		out = append(out, runPair(ctx, on, off, rounds, n))
	}
	return out, down
}
