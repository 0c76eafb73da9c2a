package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/stele/stele/auth"
)

func runToken(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return usagef("token: want `stele token create --data DIR --role ROLE --name NAME` or `stele token list --data DIR`")
	}
	sub := args[0]
	fs := newFlagSet("token "+sub, "--data DIR [--role ROLE --name NAME]")
	data := fs.String("data", "./stele-data", "data `directory` of the server")
	role := fs.String("role", "", "`role` of the new token: admin, auditor, analyst or service")
	name := fs.String("name", "", "`name` of the new token (who or what uses it; appears in the log as the actor)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	tokens, err := auth.Open(*data)
	if err != nil {
		return err
	}
	if sub == "list" {
		for _, p := range tokens.List() {
			fmt.Printf("%s\t%s\n", p.Name, p.Role)
		}
		return nil
	}
	if *role == "" || *name == "" {
		return usagef("token create: --role and --name are required")
	}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	secret, err := tokens.Create(*name, auth.Role(*role))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "token %q (role %s) created; it is shown only now, and the server records it in the log as an admin action\n", *name, *role)
	fmt.Println(secret)
	return nil
}

// setBearer authenticates a CLI request with $STELE_TOKEN, when set.
func setBearer(req *http.Request) {
	if t := os.Getenv("STELE_TOKEN"); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
}
