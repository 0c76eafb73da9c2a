package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/stele/stele/auth"
)

func tokenCreateFlags() (*flag.FlagSet, *configFlags, *string, *string) {
	fs := newFlagSet("token create", "[--data DIR] --role ROLE --name NAME")
	cf := addConfigFlags(fs, "data")
	role := fs.String("role", "", "`role` of the new token: admin, auditor, analyst or service")
	name := fs.String("name", "", "`name` of the new token (who or what uses it; appears in the log as the actor)")
	return fs, cf, role, name
}

func tokenListFlags() (*flag.FlagSet, *configFlags) {
	fs := newFlagSet("token list", "[--data DIR]")
	return fs, addConfigFlags(fs, "data")
}

func runToken(ctx context.Context, args []string) error {
	return verbCommand{
		name: "token",
		verbs: []verbSpec{
			{"create", "create a token and print it (only its SHA-256 is stored, so it is shown only now)",
				func() *flag.FlagSet { fs, _, _, _ := tokenCreateFlags(); return fs }, runTokenCreate},
			{"list", "list the tokens' names and roles",
				func() *flag.FlagSet { fs, _ := tokenListFlags(); return fs }, runTokenList},
		},
		about: "Tokens live in DIR/tokens.json; a running server picks up new ones within a second.\n" +
			"Clients pass a token with --token or $STELE_TOKEN.",
	}.run(args)
}

func runTokenCreate(args []string) error {
	fs, cf, role, name := tokenCreateFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *role == "" || *name == "" {
		return usagef("token create: --role and --name are required")
	}
	// Refuse before anything is created on disk.
	if err := auth.CheckNew(*name, auth.Role(*role)); err != nil {
		return usagef("token create: %v", err)
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	tokens, err := auth.Open(cfg.Data)
	if err != nil {
		return err
	}
	secret, err := tokens.Create(*name, auth.Role(*role))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "token %q (role %s) created for %s; it is shown only now, and the server records it in the log as an admin action\n", *name, *role, cfg.Data)
	fmt.Println(secret)
	return nil
}

func runTokenList(args []string) error {
	fs, cf := tokenListFlags()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	if err := requireDataDir(cfg.Data); err != nil {
		return err
	}
	tokens, err := auth.Open(cfg.Data)
	if err != nil {
		return err
	}
	list := tokens.List()
	if len(list) == 0 {
		fmt.Fprintf(os.Stderr, "no tokens in %s: a server on it is open to anyone who reaches it (loopback only)\n", cfg.Data)
	}
	for _, p := range list {
		fmt.Printf("%s\t%s\n", p.Name, p.Role)
	}
	return nil
}

// requireDataDir refuses a data directory that does not exist, naming
// where the command looked and how to point it elsewhere.
func requireDataDir(data string) error {
	fi, err := os.Stat(data)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no data directory %s (pass --data DIR or set STELE_DATA to the server's data directory)", data)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("data directory %s is not a directory", data)
	}
	return nil
}
