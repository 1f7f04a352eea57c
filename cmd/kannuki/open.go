package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kannuki-go/kannuki/kannukifile"
	kstore "github.com/kannuki-go/kannuki/store"
)

// store is an open lock store.
type store struct {
	backend kstore.Backend
	kind    string
	where   string // for messages: the DSN, password redacted (file:// + the directory for the file store)
	close   func() error
	// holder, when set, finds the holder of a key the store's Lister may
	// not show (MySQL without the performance schema).
	holder func(ctx context.Context, k kstore.Key) (*kstore.LockInfo, error)
	// locksNote, when set, explains the limits of the store's listing.
	locksNote func(ctx context.Context) string
}

// pingTimeout bounds the first connection, so that "database unreachable"
// is reported as an error (exit 125) instead of an endless wait for a lock.
const pingTimeout = dialTimeout + 5*time.Second

// open parses dsn and opens its store. Every error is safe to print: no
// DSN in it, and the caller's redactor removes any password a driver quotes.
func (a *app) open(ctx context.Context, dsn string) (*store, error) {
	a.red.add(dsnSecrets(dsn)...)
	t, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if t.my != nil {
		a.red.add(t.my.Passwd)
	}
	switch t.kind {
	case kindFile:
		opts := kannukifile.Options{}
		if t.dir != "" {
			// A directory named explicitly is typically shared by several
			// users' jobs; a lock file needs only be readable to be locked.
			opts.Perm = 0o644
		}
		b, err := kannukifile.New(t.dir, opts)
		if err != nil {
			return nil, reword(err, fileStoreWords)
		}
		return &store{backend: b, kind: kindFile, where: "file://" + b.Dir(), close: func() error { return nil }}, nil
	case kindPostgres:
		return a.openPostgres(ctx, t)
	case kindMySQL:
		return a.openMySQL(ctx, t)
	}
	return nil, errors.New("kannuki: unknown store")
}

// openSQL checks that the database answers before any lock is asked of b.
func (a *app) openSQL(ctx context.Context, t *target, db *sql.DB, b kstore.Backend) (*store, error) {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("kannuki: connect to %s: %w", t.shown, err)
	}
	return &store{backend: b, kind: t.kind, where: t.shown, close: db.Close}, nil
}

// fileStoreWords turns the file store's advice to Go programmers (which
// function to call, which option to set) into advice for kannuki's users.
var fileStoreWords = strings.NewReplacer(
	"(kannukifile.New does not create it)", "(kannuki does not create it)",
	"pass a directory to kannukifile.New", "name one with --dsn file:///DIR",
	"use a database backend, or set kannukifile.Options.AllowNetworkFS", "use a database DSN (postgres:// or mysql://)",
)

// reword returns err with its text passed through r; errors.Is and As
// still see err.
func reword(err error, r *strings.Replacer) error {
	msg := r.Replace(err.Error())
	if msg == err.Error() {
		return err
	}
	return &rewordedError{msg: msg, err: err}
}

type rewordedError struct {
	msg string
	err error
}

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.err }

// locks lists the store's held and awaited locks, or fails with an error
// matching ErrUnsupported when the store cannot list them.
func (s *store) locks(ctx context.Context) ([]kstore.LockInfo, error) {
	li, ok := s.backend.(kstore.Lister)
	if !ok {
		return nil, fmt.Errorf("%w: this store cannot list locks", kstore.ErrUnsupported)
	}
	return li.Locks(ctx)
}
