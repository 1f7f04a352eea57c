// Package testdb gives tests the DSNs of the local databases and decides
// whether a test without its database skips (a laptop) or fails (CI sets
// KANNUKI_TEST_REQUIRE_DB=1).
package testdb

import (
	"os"
	"testing"
)

// Default DSNs of the development and CI machines (DESIGN.md section 7).
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
	DefaultRedisAddr   = "127.0.0.1:6379"
)

// PostgresDSN is KANNUKI_PG_DSN or the default.
func PostgresDSN() string { return env("KANNUKI_PG_DSN", DefaultPostgresDSN) }

// MySQLDSN is KANNUKI_MYSQL_DSN (go-sql-driver/mysql form) or the default.
func MySQLDSN() string { return env("KANNUKI_MYSQL_DSN", DefaultMySQLDSN) }

// RedisAddr is KANNUKI_REDIS_ADDR or the default.
func RedisAddr() string { return env("KANNUKI_REDIS_ADDR", DefaultRedisAddr) }

// Required reports whether a missing database must fail the test.
func Required() bool { return os.Getenv("KANNUKI_TEST_REQUIRE_DB") == "1" }

// Unavailable ends the test when its database cannot be reached: a one-line
// skip on a laptop, a failure when KANNUKI_TEST_REQUIRE_DB=1.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s unavailable and KANNUKI_TEST_REQUIRE_DB=1: %v", what, err)
	}
	t.Skipf("%s unavailable (set KANNUKI_TEST_REQUIRE_DB=1 to fail instead): %v", what, err)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// DefaultPgBouncerDSN is PgBouncer in transaction mode (.ci/pgbouncer.sh).
const DefaultPgBouncerDSN = "postgres://postgres@127.0.0.1:6432/test?sslmode=disable"

// PgBouncerDSN is KANNUKI_PGBOUNCER_DSN or the default.
func PgBouncerDSN() string { return env("KANNUKI_PGBOUNCER_DSN", DefaultPgBouncerDSN) }
