module github.com/kannuki-go/kannuki/bench

go 1.25.0

replace (
	github.com/kannuki-go/kannuki => ../
	github.com/kannuki-go/kannuki/kannukipgxv5 => ../kannukipgxv5
)

require (
	github.com/bsm/redislock v0.9.4
	github.com/go-redsync/redsync/v4 v4.17.0
	github.com/go-sql-driver/mysql v1.10.1
	github.com/jackc/pgx/v5 v5.12.0
	github.com/kannuki-go/kannuki v0.0.0
	github.com/kannuki-go/kannuki/kannukipgxv5 v0.0.0
	github.com/lib/pq v1.12.3
	github.com/redis/go-redis/v9 v9.21.0
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)
