package saidonce

import "testing"

func TestProblem(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		fine bool
	}{
		{`kannuki: lock "k" not acquired (held after 19µs)`, true},
		{`kannuki: acquire "k": get connection: dial tcp 127.0.0.1:1: connect: connection refused`, true},
		{`kannuki: lock "k" not acquired (held after 19µs): kannuki: lock "k" not acquired (held after 11µs)`, false},
		{`kannuki: acquire "k": kannuki: pgx: closed pool`, false},
		{`kannuki: lock "k" lost: lock "k" lost`, false},
		{`kannuki: lock "k" not acquired (timeout after 1s): lock "k" not granted within 1s`, false},
		{`lock not acquired`, false},
	} {
		if got := Problem(tc.msg); (got == "") != tc.fine {
			t.Errorf("Problem(%q) = %q, want fine=%v", tc.msg, got, tc.fine)
		}
	}
}
