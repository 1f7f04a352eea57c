package bench

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Machine describes where a run happened.
type Machine struct {
	CPU       string
	Cores     int
	MaxProcs  int
	Memory    string
	Kernel    string
	Go        string
	Postgres  string
	MaxConns  string // PostgreSQL max_connections
	MySQL     string
	Redis     string
	Modules   map[string]string // module path -> version, for the drivers and peers
	LoadStart string
	LoadEnd   string
	// PGOthersStart and PGOthersEnd count the PostgreSQL client sessions
	// of other programs at the start and the end of the run.
	PGOthersStart string
	PGOthersEnd   string
}

// OtherPGSessions counts the client sessions of other programs on the
// PostgreSQL server (they share its max_connections with the run).
func OtherPGSessions(ctx context.Context, env Env) string {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := pgx.Connect(cctx, env.pgDSN())
	if err != nil {
		return "?"
	}
	defer func() { _ = c.Close(context.Background()) }()
	var n int
	if err := c.QueryRow(cctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name <> current_setting('application_name')").Scan(&n); err != nil {
		return "?"
	}
	return strconv.Itoa(n)
}

// modules whose versions a report shows.
var reportedModules = []string{
	"github.com/jackc/pgx/v5",
	"github.com/lib/pq",
	"github.com/go-sql-driver/mysql",
	"github.com/redis/go-redis/v9",
	"github.com/bsm/redislock",
	"github.com/go-redsync/redsync/v4",
}

// procField returns the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// LoadAvg is /proc/loadavg's first three fields.
func LoadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// DescribeMachine gathers the machine, Go and server versions. Servers
// that cannot be reached are reported as such.
func DescribeMachine(ctx context.Context, env Env) Machine {
	m := Machine{
		CPU:      procField("/proc/cpuinfo", "model name"),
		Cores:    runtime.NumCPU(),
		MaxProcs: runtime.GOMAXPROCS(0),
		Memory:   procField("/proc/meminfo", "MemTotal"),
		Kernel:   readTrim("/proc/sys/kernel/osrelease"),
		Go:       runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Modules:  map[string]string{},
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			for _, want := range reportedModules {
				if d.Path == want {
					m.Modules[want] = d.Version
				}
			}
		}
	}
	unreachable := func(err error) string { return "unreachable: " + err.Error() }
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if c, err := pgx.Connect(cctx, env.pgDSN()); err != nil {
		m.Postgres = unreachable(err)
	} else {
		_ = c.QueryRow(cctx, "SELECT version()").Scan(&m.Postgres)
		_ = c.QueryRow(cctx, "SHOW max_connections").Scan(&m.MaxConns)
		_ = c.Close(cctx)
	}
	if db, err := env.MySQLDB(cctx, 1, false); err != nil {
		m.MySQL = unreachable(err)
	} else {
		_ = db.QueryRowContext(cctx, "SELECT VERSION()").Scan(&m.MySQL)
		_ = db.Close()
	}
	if c, err := env.Redis(cctx, 1); err != nil {
		m.Redis = unreachable(err)
	} else {
		if info, err := c.Info(cctx, "server").Result(); err == nil {
			for line := range strings.SplitSeq(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
					m.Redis = v
				}
			}
		}
		_ = c.Close()
	}
	return m
}
