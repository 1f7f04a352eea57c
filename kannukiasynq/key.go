package kannukiasynq

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"

	"github.com/kannuki-go/kannuki/kannukijob"
)

// MaxKeyPayloadLen is the longest canonical payload encoding put into a lock
// key as it is. Longer payloads are replaced by the string "sha256:" + the
// hex SHA-256 of their canonical encoding, which keeps keys well below
// keys.MaxKeyLen.
const MaxKeyPayloadLen = 1024

// Key returns the lock key (before the Locker's prefix) that the middleware
// uses for a task of type typ with payload: the type, ":", and the
// canonical encoding of the payload.
//
// A JSON payload is encoded canonically: object keys sorted, insignificant
// white space dropped, numbers kept as written. A payload that is not JSON
// (protobuf, plain bytes, empty) is keyed by the JSON string "base64:" + its
// standard base64 encoding. Only a JSON payload that is literally such a
// string, or "sha256:..." for a long payload, could share a key with another
// payload of the same type.
func Key(typ string, payload []byte) (string, error) {
	return kannukijob.Key(typ, canonicalPayload(payload))
}

func canonicalPayload(payload []byte) any {
	b, ok := canonicalJSON(payload)
	if !ok {
		b, _ = json.Marshal("base64:" + base64.StdEncoding.EncodeToString(payload))
	}
	if len(b) > MaxKeyPayloadLen {
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return json.RawMessage(b)
}

// canonicalJSON re-encodes a single JSON value canonically: encoding/json
// sorts object keys, and json.Number keeps numbers exactly as written.
func canonicalJSON(payload []byte) ([]byte, bool) {
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || len(bytes.TrimSpace(payload[dec.InputOffset():])) > 0 {
		return nil, false
	}
	b, err := json.Marshal(v)
	return b, err == nil
}
