// Command stele runs and checks a Stele change log. Its commands:
//
//   - serve: run the HTTP API over a data directory
//   - demo: start Stele on a demo directory, ingest a sample history, verify it
//   - verify: check a data directory or an export offline, or a running server from outside
//   - witness: cosign other logs' checkpoints as a C2SP tlog-witness
//   - export: write filtered records with their proofs (JSON Lines, CSV, Parquet)
//   - reindex: rebuild a data directory's index from its log
//   - snapshot: write a table's rows as they were at an instant
//   - projections: list the configured read models, or rebuild one
//   - token: create or list API tokens
//   - keys: rotate the keystore's master key
//   - erase: erase a data subject and print the signed receipt
//   - deadletters: list or replay the captured records parked for breaking their schema
//   - schema: register, print or infer a table's JSON Schema
//   - status: a running server's health, checkpoint and capture lag
//   - bench: measure the headline figures
//   - version: print the version
//
// Run `stele help` for the list, `stele help COMMAND` for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/stele/stele/internal/gctune"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the HTTP API over a data directory", runServe},
		{"verify", "check a data directory offline, or a running server as an outside auditor", runVerify},
		{"witness", "cosign other logs' checkpoints as a C2SP tlog-witness, refusing and keeping evidence of any split view", runWitness},
		{"export", "write filtered records as JSON Lines, CSV or Parquet with proofs to verify offline", runExport},
		{"reindex", "rebuild the index of a data directory from its log", runReindex},
		{"token", "create or list API tokens (roles admin, auditor, analyst, service)", runToken},
		{"keys", "rotate the keystore's master key (server stopped)", runKeys},
		{"erase", "erase a data subject (destroy their keys) and print the signed receipt", runErase},
		{"deadletters", "list or replay the captured records parked for breaking their schema", runDeadLetters},
		{"schema", "register, print or infer JSON Schemas of source tables (put, get, infer)", runSchema},
		{"snapshot", "write a table's rows as they were at an instant, as JSON Lines", runSnapshot},
		{"projections", "list the configured projections, or rebuild one from the log", runProjections},
		{"status", "print a running server's health, checkpoint and capture sources' lag", runStatus},
		{"demo", "start Stele on ./stele-demo-data, ingest a sample history, prove and audit it", runDemo},
		{"bench", "measure the headline figures on this machine", runBench},
		{"version", "print the version", runVersion},
	}
}

// Exit codes: 0 success, 1 failure (including a failed verification), 2
// usage error.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in the command line, which exit with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an exit code chosen by the command, after the command
// has already told the user what happened.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			// `stele help serve` shows the command's own flags.
			return run(ctx, append([]string{args[1], "-h"}, args[2:]...), stderr)
		}
		printUsage(os.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:])
		var ue *usageError
		var ee *exitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "stele %s: %v\nRun 'stele %s -h' for usage.\n", name, err, name)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "stele %s: %v\n", name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "stele: unknown command %q\n\n", name)
	printUsage(stderr)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "Stele: an append-only, tamper-evident change log.\n\nUsage:\n\n  stele <command> [flags]\n\nCommands:\n\n")
	width := len("help")
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-*s  %s\n\n", width, "help", "show this help, or `stele help <command>` for a command's flags")
}

// newFlagSet returns a flag set that reports errors instead of exiting, with
// a usage text headed by the command's synopsis.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("stele "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stele %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors (the flag
// package has already printed them with the usage text) and refusing
// positional arguments, which no command takes.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
