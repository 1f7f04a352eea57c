package kannukimysql_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// A Locker on MySQL or MariaDB. The pool needs a driver registered as
// "mysql" (import _ "github.com/go-sql-driver/mysql"); any DSN works, with
// or without interpolateParams.
func ExampleNew() {
	db, err := sql.Open("mysql", "app@tcp(127.0.0.1:3306)/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// Every held or awaited lock pins a connection: size the pool for them.
	db.SetMaxOpenConns(20)

	l := kannuki.New(kannukimysql.New(db, kannukimysql.Options{}), kannuki.Options{KeyPrefix: "billing"})
	ctx := context.Background()
	err = l.WithLock(ctx, "invoice-numbers", func(ctx context.Context) error {
		// One process at a time, across every server using this database.
		return nil
	}, kannuki.Timeout(5*time.Second))
	if errors.Is(err, store.ErrNotAcquired) {
		log.Print("someone else is numbering invoices")
	}
}

// The socket watch: the driver dials through a Dialer, so that a lock
// whose session the server ends is reported lost at once (fn's context
// canceled) rather than at the next keepalive. With
// github.com/go-sql-driver/mysql the registration is two lines before the
// pool is opened:
//
//	d := &kannukimysql.Dialer{}
//	mysql.RegisterDialContext("tcp", d.DialContext)
func ExampleDialer() {
	d := &kannukimysql.Dialer{}
	// mysql.RegisterDialContext("tcp", d.DialContext) // the driver's hook
	db, err := sql.Open("mysql", "app@tcp(127.0.0.1:3306)/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	l := kannuki.New(kannukimysql.New(db, kannukimysql.Options{Dialer: d}), kannuki.Options{})
	err = l.WithLock(context.Background(), "report", func(ctx context.Context) error {
		// ctx ends with store.ErrLockLost as soon as the server ends
		// the holding session.
		return nil
	})
	if errors.Is(err, store.ErrLockLost) {
		log.Print("the lock was lost while the report ran")
	}
}
