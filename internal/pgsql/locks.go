package pgsql

import (
	"strconv"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// LockRow is one row of the Locks query, as a driver scanned it.
type LockRow struct {
	ClassID, ObjID int64
	ObjSubID       int // 1: a bigint key, 2: a pair of int4
	Mode           string
	Granted        bool
	PID            int64
	Application    string
	Client         string
	Since          time.Time
	Query          string // the session's current or last statement
}

// LockInfos turns the rows of the Locks query into store.LockInfo, by one
// rule for both PostgreSQL backends. ID is the bigint key; a pair key has
// none. Name is the key Kannuki wrote into the session's statement (a
// waiter's lock statement, a holder's try or keepalive), as Comment
// escaped it, but only for a session that holds or awaits one advisory
// lock: a session with several (a shared connection) shows the comment of
// its last statement only, which cannot tell which lock it names. A pair
// key without a name is named "K1,K2", the raw keys' spelling.
func LockInfos(rows []LockRow) []store.LockInfo {
	perPID := map[int64]int{}
	for _, r := range rows {
		perPID[r.PID]++
	}
	out := make([]store.LockInfo, 0, len(rows))
	for _, r := range rows {
		li := store.LockInfo{
			Mode:        store.ModeExclusive,
			Granted:     r.Granted,
			PID:         r.PID,
			Application: r.Application,
			Client:      r.Client,
			Since:       r.Since,
		}
		if r.Mode == "ShareLock" {
			li.Mode = store.ModeShared
		}
		if perPID[r.PID] == 1 {
			li.Name = NameFromQuery(r.Query)
		}
		if r.ObjSubID == 2 {
			if li.Name == "" {
				li.Name = strconv.Itoa(int(int32(uint32(r.ClassID)))) + "," + strconv.Itoa(int(int32(uint32(r.ObjID))))
			}
		} else {
			li.ID = int64(uint64(uint32(r.ClassID))<<32 | uint64(uint32(r.ObjID)))
		}
		out = append(out, li)
	}
	return out
}
