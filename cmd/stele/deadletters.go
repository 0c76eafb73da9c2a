package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const deadLettersUsage = `[--url URL] list|replay

list    what captured records are parked in the dead-letter file and why
replay  offer every parked record to the log again (after a schema fix);
        those that fit are appended, the rest stay parked with today's reason

Admin only: the token comes from $STELE_TOKEN.`

func runDeadLetters(ctx context.Context, args []string) error {
	fs := newFlagSet("deadletters", deadLettersUsage)
	base := fs.String("url", "http://127.0.0.1:7070", "`URL` of the running stele server")
	var action string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if action == "" && fs.NArg() == 1 {
		action = fs.Arg(0)
	}
	method, path := "", ""
	switch action {
	case "list":
		method, path = http.MethodGet, "/v1/deadletters"
	case "replay":
		method, path = http.MethodPost, "/v1/deadletters/replay"
	default:
		return usagef("want list or replay, got %q", action)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(*base, "/")+path, nil)
	if err != nil {
		return err
	}
	setBearer(req)
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
		return fmt.Errorf("deadletters %s: server answered %s: %s", action, resp.Status, strings.TrimSpace(string(out)))
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Fprintln(os.Stdout, strings.TrimSpace(string(out)))
	return nil
}
