// Command stele runs and checks a Stele change log: `stele serve` runs the
// HTTP API over a data directory, `stele verify` checks a store offline or a
// running server from the outside, `stele reindex` rebuilds the derived
// index. Run `stele help` for the list of commands.
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
		{"demo", "run a demonstration against a fresh log", runDemo},
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
			return run(ctx, []string{args[1], "-h"}, stderr)
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
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "  help     show this help, or `stele help <command>` for a command's flags\n\n")
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
