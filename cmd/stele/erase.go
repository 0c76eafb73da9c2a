package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func runErase(ctx context.Context, args []string) error {
	fs := newFlagSet("erase", "[--url URL] [--token TOKEN] [--group GROUP] [--reason TEXT] SUBJECT")
	base := fs.String("url", "http://127.0.0.1:7070", "`URL` of the running stele server")
	token := fs.String("token", os.Getenv("STELE_TOKEN"), "admin API `token` (default $STELE_TOKEN)")
	group := fs.String("group", "", "erase only in this data `group` (default: every group)")
	reason := fs.String("reason", "", "free `text` for the receipt, such as a ticket number (not personal data)")
	// The subject may come before or after the flags.
	var subject string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		subject, args = args[0], args[1:]
	} else if n := len(args); n > 0 && !strings.HasPrefix(args[n-1], "-") && (n < 2 || !strings.HasPrefix(args[n-2], "-") || strings.Contains(args[n-2], "=")) {
		subject, args = args[n-1], args[:n-1]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if subject == "" {
		return usagef("erase: give exactly one SUBJECT (the value of the schema's x-subject field)")
	}
	u := strings.TrimRight(*base, "/") + "/v1/subjects/" + url.PathEscape(subject) + "/erase"
	if *group != "" {
		u += "?group=" + url.QueryEscape(*group)
	}
	body, _ := json.Marshal(map[string]string{"reason": *reason})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("erase: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("erase: server answered %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Println(strings.TrimSpace(string(out)))
	return nil
}
