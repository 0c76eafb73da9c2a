// Package integration tests the real stele binary end to end.
//
// The tests build cmd/stele once (TestMain), start it as a child process on
// a fresh data directory per test, talk to it only through its HTTP API and
// its command line, stop it with SIGTERM or SIGKILL, and check every proof
// it serves with an independent verifier (github.com/transparency-dev/merkle
// and golang.org/x/mod/sumdb/note), never with Stele's own packages.
//
// Run them with `go test ./integration`; set STELE_INTEGRATION_RACE=1 to
// build the server binary with the race detector as well.
package integration
