// Package crashtest runs a Stele cluster of real stele processes on a real
// three-server NATS JetStream cluster in the test process, and kills (-9)
// and pauses (SIGSTOP) its writer under load. It holds only tests: they
// take tens of seconds each, so they live apart from package cluster's and
// CI runs them in parallel with the rest.
package crashtest
