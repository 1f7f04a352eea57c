package txopts

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/kannuki-go/kannuki/store"
)

func TestSQL(t *testing.T) {
	want := sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true}
	for name, v := range map[string]any{"pointer": &want, "value": want} {
		got, err := SQL(v, "kannukipg")
		if err != nil || got == nil || *got != want {
			t.Errorf("%s: got %+v, %v; want %+v", name, got, err, want)
		}
	}
	if got, err := SQL(nil, "kannukipg"); got != nil || err != nil {
		t.Errorf("nil: got %+v, %v; want nil, nil", got, err)
	}
	if _, err := SQL("serializable", "kannukipg"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("a string: %v, want ErrInvalidArgument", err)
	}
}
