package mysql_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/go-sql-driver/mysql"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// The socket watch with go-sql-driver/mysql: every "tcp" connection of
// the driver is made by the Dialer, and the Backend watches those that
// hold a lock.
func Example_dialer() {
	d := &kannukimysql.Dialer{}
	mysql.RegisterDialContext("tcp", d.DialContext)

	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	l := kannuki.New(kannukimysql.New(db, kannukimysql.Options{Dialer: d}), kannuki.Options{})
	err = l.WithLock(context.Background(), "nightly-report", func(ctx context.Context) error {
		<-ctx.Done() // a KILL of the holding session ends ctx at once
		return context.Cause(ctx)
	})
	log.Print(err)
}

// The same with a connector: Config.DialFunc instead of the global
// registration.
func Example_dialFunc() {
	d := &kannukimysql.Dialer{}
	cfg, err := mysql.ParseDSN("root@tcp(127.0.0.1:3306)/test")
	if err != nil {
		log.Fatal(err)
	}
	cfg.DialFunc = d.DialNetwork
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	_ = kannukimysql.New(db, kannukimysql.Options{Dialer: d})
}
