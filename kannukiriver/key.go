package kannukiriver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukijob"
)

// MaxKeyArgsLen is the longest canonical argument encoding put into a lock
// key as it is. Longer arguments are replaced by the string
// "sha256:" + the hex SHA-256 of their canonical encoding, which keeps keys
// well below keys.MaxKeyLen. River's arguments are JSON objects, so such a
// string never equals real arguments. It is kannukijob.MaxKeyArgsLen.
const MaxKeyArgsLen = kannukijob.MaxKeyArgsLen

// Key returns the lock key (before the Locker's prefix) that the middleware
// uses for a job of kind with encoded arguments args, such as a
// rivertype.JobRow's Kind and EncodedArgs: the kind, ":", and the canonical
// JSON of the arguments (object keys sorted, insignificant white space
// dropped, numbers kept as written).
func Key(kind string, args []byte) (string, error) {
	v, err := canonicalArgs(args)
	if err != nil {
		return "", err
	}
	return kannukijob.Key(kind, v)
}

// canonicalArgs decodes JSON arguments and re-encodes them canonically:
// encoding/json sorts object keys, and json.Number keeps numbers exactly as
// written (no float64 rounding of large ids).
func canonicalArgs(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: job arguments are not JSON: %v", kannuki.ErrInvalidArgument, err)
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("%w: job arguments hold more than one JSON value", kannuki.ErrInvalidArgument)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: job arguments cannot be encoded: %v", kannuki.ErrInvalidArgument, err)
	}
	if len(b) > MaxKeyArgsLen {
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:]), nil
	}
	return json.RawMessage(b), nil
}

// canonicalValue is canonicalArgs for a Go value, such as the result of
// Options.KeyArgs.
func canonicalValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: key arguments cannot be encoded: %v", kannuki.ErrInvalidArgument, err)
	}
	return canonicalArgs(b)
}
