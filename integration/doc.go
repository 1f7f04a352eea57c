// Package integration holds tests that need real database drivers
// (pgx/stdlib, lib/pq, go-sql-driver/mysql). They live in their own module so
// that the root module keeps no third-party dependency.
package integration
