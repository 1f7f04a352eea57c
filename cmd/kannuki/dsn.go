package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Kinds of lock store a DSN selects.
const (
	kindFile     = "file"
	kindPostgres = "postgres"
	kindMySQL    = "mysql"
)

// dialTimeout bounds connecting to a database when the DSN sets no timeout
// of its own, so an unreachable host fails in seconds instead of hanging a
// cron job forever.
const dialTimeout = 10 * time.Second

// target is a parsed DSN: which store, and how to reach it.
type target struct {
	kind string
	// dir is the lock directory of the file store ("" = the backend's default).
	dir string
	// pgURL is the PostgreSQL URL handed to pgx (password included).
	pgURL string
	// my is the go-sql-driver/mysql configuration (password included).
	my *mysql.Config
	// shown is the DSN as it may be printed: password replaced.
	shown string
}

// parseDSN reads the DSN forms the CLI accepts:
//
//	""                                   the embedded file store, default directory
//	file:///var/lock/kannuki             the file store in that directory (file:/path too)
//	postgres://user:pass@host:port/db?opts   PostgreSQL (postgresql:// too); opts as libpq/pgx
//	mysql://user:pass@host:port/db?opts      MySQL/MariaDB (mariadb:// too); opts as go-sql-driver
//
// Errors never contain the DSN itself: it may hold a password.
func parseDSN(dsn string) (*target, error) {
	if dsn == "" {
		return &target{kind: kindFile}, nil
	}
	if hint := goMySQLHint(dsn); hint != "" {
		return nil, errors.New(hint)
	}
	scheme, _, ok := strings.Cut(dsn, ":")
	if !ok {
		return nil, errors.New("kannuki: DSN has no scheme: use postgres://, mysql:// or file:// (see kannuki help dsn)")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("kannuki: invalid DSN: %v", err)
	}
	switch strings.ToLower(scheme) {
	case "file":
		dir := u.Path
		if u.Opaque != "" {
			dir = u.Opaque
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, errors.New("kannuki: file DSN: use file:///path (the file store locks one host only)")
		}
		if dir == "" {
			return nil, errors.New("kannuki: file DSN: missing directory (file:///path)")
		}
		return &target{kind: kindFile, dir: dir, shown: "file://" + dir}, nil
	case "postgres", "postgresql":
		return parsePostgres(u)
	case "mysql", "mariadb":
		return parseMySQL(u)
	}
	return nil, fmt.Errorf("kannuki: unsupported DSN scheme %q: use postgres://, postgresql://, mysql://, mariadb:// or file://", scheme)
}

// parsePostgres keeps the URL for pgx, adding an application_name (so
// pg_stat_activity and kannuki locks show who holds a lock) and a connect
// timeout when the user set none.
func parsePostgres(u *url.URL) (*target, error) {
	shown := redactURL(u)
	q := u.Query()
	if q.Get("application_name") == "" {
		q.Set("application_name", "kannuki")
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", fmt.Sprint(int(dialTimeout/time.Second)))
	}
	u.RawQuery = q.Encode()
	return &target{kind: kindPostgres, pgURL: u.String(), shown: shown}, nil
}

// parseMySQL translates mysql://user:pass@host:port/db?params into a
// go-sql-driver/mysql configuration. Query parameters are go-sql-driver's
// own (tls, timeout, readTimeout, ...; unknown ones become session system
// variables, as in that driver). socket=/path connects over a Unix socket.
// The host defaults to 127.0.0.1 and the port to 3306.
func parseMySQL(u *url.URL) (*target, error) {
	q := u.Query()
	addr, netw := u.Host, "tcp"
	if sock := q.Get("socket"); sock != "" {
		if addr != "" {
			return nil, errors.New("kannuki: mysql DSN: give a host or ?socket=, not both")
		}
		addr, netw = sock, "unix"
		q.Del("socket")
	} else {
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "127.0.0.1"
		}
		if port == "" {
			port = "3306"
		}
		addr = net.JoinHostPort(host, port)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return nil, errors.New("kannuki: mysql DSN: the path must be a single database name")
	}
	// Let the driver parse its own parameters from a DSN without credentials,
	// then set the credentials on the Config: a password may contain any
	// character, which the driver's DSN syntax cannot always carry.
	cfg, err := mysql.ParseDSN(netw + "(" + addr + ")/" + url.PathEscape(db) + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("kannuki: mysql DSN: %v", err)
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	if !q.Has("timeout") {
		cfg.Timeout = dialTimeout
	}
	if !q.Has("interpolateParams") {
		// One round trip per statement instead of prepare + execute.
		cfg.InterpolateParams = true
	}
	return &target{kind: kindMySQL, my: cfg, shown: redactURL(u)}, nil
}

// goMySQLHint recognises the DSN form of Go's MySQL driver
// (user:pass@tcp(host:port)/db?params), which people copy from a Go
// service's configuration, and returns the mysql:// URL to use instead
// (password shown as xxxxx); "" when dsn is not of that form.
func goMySQLHint(dsn string) string {
	if strings.Contains(dsn, "://") || !strings.Contains(dsn, "/") {
		return ""
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return ""
	}
	// ParseDSN takes almost anything with a '/'; the form is only certain
	// with a protocol(address) or a user before "@/".
	if !strings.Contains(dsn, "(") && !strings.Contains(dsn, "@/") {
		return ""
	}
	u := url.URL{Scheme: "mysql", Path: "/" + cfg.DBName}
	switch {
	case cfg.Passwd != "":
		u.User = url.UserPassword(cfg.User, "xxxxx")
	case cfg.User != "":
		u.User = url.User(cfg.User)
	}
	q := url.Values{}
	if _, params, ok := strings.Cut(dsn, "?"); ok {
		q, _ = url.ParseQuery(params)
	}
	switch cfg.Net {
	case "unix":
		q.Set("socket", cfg.Addr)
	default:
		u.Host = cfg.Addr
	}
	q.Del("password")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "%2F", "/") // a socket path reads better whole
	return "kannuki: this is the DSN form of Go's MySQL driver; kannuki takes a URL: --dsn '" + u.String() + "' (see kannuki help dsn)"
}

// redactURL prints u with its password (in the user info or in a
// password= parameter) replaced by "xxxxx".
func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	q := c.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// dsnSecrets returns every spelling of the password(s) a DSN carries, found
// without relying on url.Parse (which fails on exactly the malformed DSNs
// whose error messages are most likely to echo them). The redactor removes
// these strings from everything kannuki prints.
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// user:pass@host... : the user info ends at the last '@' before the
		// path or query (a careless password may contain '@' or '/').
		end := len(rest)
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			end = i
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			if _, pass, ok := strings.Cut(rest[:at], ":"); ok {
				add(pass)
			}
		}
	}
	if !strings.Contains(dsn, "://") {
		// user:pass@tcp(host)/db, the Go MySQL driver's form: the user
		// info ends at the last '@' before the last '/'.
		end := strings.LastIndex(dsn, "/")
		if end < 0 {
			end = len(dsn)
		}
		if at := strings.LastIndex(dsn[:end], "@"); at >= 0 {
			if _, pass, ok := strings.Cut(dsn[:at], ":"); ok {
				add(pass)
			}
		}
	}
	if _, query, ok := strings.Cut(dsn, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if strings.EqualFold(k, "password") || strings.EqualFold(k, "passwd") {
				add(v)
			}
		}
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	return out
}
