// Package hooktest is the test harness shared by the kannuki.Hook modules
// (kannukiotel, kannukiprom) and the metrics example: a PostgreSQL backend
// with an observer that sees who waits on a key, a Recorder of events by
// call, the Traffic run that causes every outcome on purpose, and the
// interleaved-cycle benchmark.
//
// It imports nothing outside the root module (standard library only): the
// caller registers the database/sql driver (for example with a blank
// import of github.com/jackc/pgx/v5/stdlib) and passes its name.
package hooktest
