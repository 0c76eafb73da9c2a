package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func deadLettersFlags(verb string) (*flag.FlagSet, *string, *string) {
	fs := newFlagSet("deadletters "+verb, "[--url URL] [--token TOKEN]")
	base := fs.String("url", defaultURL, "`URL` of the running stele server")
	return fs, base, tokenFlag(fs)
}

func runDeadLetters(ctx context.Context, args []string) error {
	verb := func(name, summary string) verbSpec {
		return verbSpec{name, summary,
			func() *flag.FlagSet { fs, _, _ := deadLettersFlags(name); return fs },
			func(args []string) error { return deadLetters(ctx, name, args) }}
	}
	return verbCommand{
		name: "deadletters",
		verbs: []verbSpec{
			verb("list", "what captured records are parked in the dead-letter file and why"),
			verb("replay", "offer every parked record to the log again (after a schema fix); those that fit\n"+
				"           are appended, the rest stay parked with today's reason"),
		},
		about: "Admin only: pass an admin token with --token or $STELE_TOKEN.",
	}.run(args)
}

func deadLetters(ctx context.Context, action string, args []string) error {
	fs, base, token := deadLettersFlags(action)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	method, path := http.MethodGet, "/v1/deadletters"
	if action == "replay" {
		method, path = http.MethodPost, "/v1/deadletters/replay"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(*base, "/")+path, nil)
	if err != nil {
		return err
	}
	setBearer(req, *token)
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("deadletters %s: %w", action, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("deadletters %s: read the answer: %w", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		return answerError("deadletters "+action, resp.StatusCode, out, *token)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Fprintln(os.Stdout, strings.TrimSpace(string(out)))
	return nil
}
