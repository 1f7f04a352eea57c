//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

// networkFS is not detected on these systems yet; see the package doc.
func networkFS(string) string { return "" }
