// Package txopts reads, for the database/sql backends, the transaction
// options a caller gave kannuki.InTx (kannuki.TxOptions).
package txopts

import (
	"database/sql"
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// SQL returns v as the options of database/sql's BeginTx. v may be nil
// (the driver's defaults), a *sql.TxOptions or a sql.TxOptions; anything
// else is an error matching store.ErrInvalidArgument that names backend.
func SQL(v any, backend string) (*sql.TxOptions, error) {
	switch o := v.(type) {
	case nil:
		return nil, nil
	case *sql.TxOptions:
		return o, nil
	case sql.TxOptions:
		return &o, nil
	}
	return nil, fmt.Errorf("%w: %s: TxOptions of type %T, want *sql.TxOptions", store.ErrInvalidArgument, backend, v)
}
