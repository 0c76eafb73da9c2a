package api

import (
	"net/url"
	"slices"
	"strconv"
	"time"
)

// params parses the query string, refusing parameters the endpoint does not
// know (a typo such as ?sorce= would otherwise silently widen a search) and
// repeated ones. Empty values count as absent.
func params(rawQuery string, allowed ...string) (map[string]string, *apiError) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, &apiError{Msg: "malformed query string: " + err.Error()}
	}
	out := make(map[string]string, len(q))
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // report the same parameter every time
	for _, name := range names {
		vals := q[name]
		if !slices.Contains(allowed, name) {
			return nil, &apiError{Msg: name + ": unknown query parameter", Field: name}
		}
		if len(vals) > 1 {
			return nil, &apiError{Msg: name + ": given more than once", Field: name}
		}
		if vals[0] != "" {
			out[name] = vals[0]
		}
	}
	return out, nil
}

func parseTime(name, v string) (time.Time, *apiError) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &apiError{Msg: name + ": " + strconv.Quote(v) + " is not an RFC 3339 timestamp (like 2026-01-02T15:04:05Z)", Field: name}
	}
	return t, nil
}

func parseUint(name, v string) (uint64, *apiError) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &apiError{Msg: name + ": " + strconv.Quote(v) + " is not a non-negative integer", Field: name}
	}
	return n, nil
}

// maxLimit is the largest page a client may ask for; the query engine
// enforces the same bound, checked here so the error names the parameter.
const maxLimit = 1000

func parseLimit(v string) (int, *apiError) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, &apiError{Msg: "limit: " + strconv.Quote(v) + " is not an integer from 1 to " + strconv.Itoa(maxLimit), Field: "limit"}
	}
	return n, nil
}
