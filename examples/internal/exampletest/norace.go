//go:build !race

package exampletest

// Race is true when the tests run with -race; the programs are then built
// with -race too.
const Race = false
