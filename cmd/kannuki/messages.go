package main

import (
	"regexp"
	"strings"
)

// goPackagePrefix matches the "pkg: " a Go library puts before its
// messages ("sql: database is closed", "driver: bad connection"). To a
// user of the command they name nothing they know; kannuki's own context
// ("kannuki: connect to HOST: ...") says where the message comes from.
var goPackagePrefix = regexp.MustCompile(`(^|: )(?:sql|driver|pgconn|pgx|pgtype|stdlib|kannukipg|kannukipgxv5|kannukimysql|kannukifile|kannukimem): `)

// message is err's text as kannuki prints it: starting with "kannuki",
// naming no Go package. The redacting writers remove passwords.
func message(err error) string {
	msg := err.Error()
	for {
		m := goPackagePrefix.ReplaceAllString(msg, "$1")
		if m == msg {
			break
		}
		msg = m
	}
	if !strings.HasPrefix(msg, "kannuki") {
		msg = "kannuki: " + msg
	}
	return msg
}
