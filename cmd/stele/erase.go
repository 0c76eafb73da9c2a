package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func runErase(ctx context.Context, args []string) error {
	fs := newFlagSet("erase", "[--url URL] [--token TOKEN] [--group GROUP] [--reason TEXT] SUBJECT")
	base := fs.String("url", defaultURL, "`URL` of the running stele server")
	token := tokenFlag(fs)
	group := fs.String("group", "", "erase only in this data `group` (default: every group)")
	reason := fs.String("reason", "", "free `text` for the receipt, such as a ticket number (not personal data)")
	// The subject may come before or after the flags.
	pos, err := parseMixed(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("erase: give exactly one SUBJECT (the value of the schema's x-subject field)")
	}
	subject := pos[0]
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
	setBearer(req, *token)
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
		return answerError("erase", resp.StatusCode, out, *token)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Println(strings.TrimSpace(string(out)))
	return nil
}
