package kannukifile

import "os"

// Options configure a file Backend. The zero value is ready to use.
type Options struct {
	// Perm is the permission of the lock files this backend creates,
	// before the umask. 0 means 0600 (the creating user only). Lock files
	// need only be readable to be locked; a holder that cannot write to a
	// lock file still locks it but leaves no readable record.
	Perm os.FileMode

	// AllowNetworkFS lets New use a directory on a network filesystem,
	// which it otherwise refuses. File locks there exclude processes of
	// this host at best; never rely on them across hosts.
	AllowNetworkFS bool
}
