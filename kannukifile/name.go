package kannukifile

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// readableLen bounds the readable prefix of a lock file name.
const readableLen = 40

// lockSuffix ends every lock file name.
const lockSuffix = ".lock"

// fileName is the lock file name of key: a readable prefix of the key made
// of [A-Za-z0-9._-] only (every other byte becomes '_', a leading '.' or
// '-' too), a dash, the hex SHA-256 of the whole key and ".lock". It
// contains no '/' and is never "." or "..", so it always names a file
// directly inside the lock directory; the hash makes it unique per key.
func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return readable(key) + "-" + hex.EncodeToString(sum[:]) + lockSuffix
}

func readable(key string) string {
	var sb strings.Builder
	for i := 0; i < len(key) && sb.Len() < readableLen; i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && sb.Len() > 0:
		default:
			c = '_'
		}
		sb.WriteByte(c)
	}
	if sb.Len() == 0 {
		return "key"
	}
	return sb.String()
}

// parseFileName returns the readable prefix of a lock file name, and false
// for names this package did not make.
func parseFileName(name string) (string, bool) {
	const hashLen = 2 * sha256.Size
	rest, ok := strings.CutSuffix(name, lockSuffix)
	if !ok || len(rest) < hashLen+2 || rest[len(rest)-hashLen-1] != '-' {
		return "", false
	}
	for _, c := range rest[len(rest)-hashLen:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return rest[:len(rest)-hashLen-1], true
}
