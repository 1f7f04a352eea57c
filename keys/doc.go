// Package keys derives the database locks a key names, compatibly with the
// Ruby kannuki gem (Ruby, the default), with the with_advisory_lock gem
// (Advisory), or from caller-chosen ids (Raw); KEYS.md in the repository
// is the specification. Define declares typed, reusable keys.
package keys
