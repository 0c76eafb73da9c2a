package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// isHelpFlag reports whether a is one of the flag package's help flags.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// parseArgs parses fs from args. Help (-h) goes to standard output and
// returns flag.ErrHelp, which exits 0; a flag error has been printed by the
// flag package with the usage text and becomes exit status 2.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if wantsHelp(args) {
		fs.SetOutput(os.Stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitUsage}
	}
	return nil
}

// verbArgs finds the verb of a command with verbs (`stele token list`):
// the first argument that is neither a flag nor a flag's value, so flags
// may come before it and after it (`stele deadletters --url U list` and
// `stele deadletters list --url U`). rest is args without the verb. Every
// flag takes a value (`--data DIR`) except the help flags, those written
// `--flag=value`, and the ones named in boolFlags.
func verbArgs(args []string, boolFlags ...string) (verb string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], append(append([]string{}, args[:i]...), args[i+2:]...)
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
		name := strings.TrimLeft(a, "-")
		if isHelpFlag(a) || strings.Contains(name, "=") {
			continue
		}
		isBool := false
		for _, b := range boolFlags {
			isBool = isBool || b == name
		}
		if !isBool {
			i++ // its value
		}
	}
	return "", args
}

// verbCommand is a command made of verbs (token create|list, …).
type verbCommand struct {
	name  string
	verbs []verbSpec
	// about is printed after the verbs' usage in the command's help.
	about string
}

// verbSpec is one verb: its flag set (for the help text) and what runs it.
type verbSpec struct {
	name    string
	summary string
	flags   func() *flag.FlagSet
	run     func(args []string) error
}

// run finds the verb among args and runs it with the other arguments.
// `stele CMD -h` (and `stele help CMD`) prints every verb's usage and
// exits 0.
func (c verbCommand) run(args []string, boolFlags ...string) error {
	verb, rest := verbArgs(args, boolFlags...)
	for _, v := range c.verbs {
		if v.name == verb {
			return v.run(rest)
		}
	}
	if verb == "" && wantsHelp(rest) {
		c.printHelp()
		return flag.ErrHelp
	}
	if verb == "" {
		return usagef("want a verb: %s", c.verbList())
	}
	return usagef("unknown verb %q: want %s", verb, c.verbList())
}

func (c verbCommand) verbList() string {
	names := make([]string, len(c.verbs))
	for i, v := range c.verbs {
		names[i] = v.name
	}
	return strings.Join(names, " or ")
}

func (c verbCommand) printHelp() {
	w := os.Stdout
	fmt.Fprintf(w, "Usage of stele %s (flags may come before or after the verb):\n\n", c.name)
	for _, v := range c.verbs {
		fmt.Fprintf(w, "  %-8s %s\n", v.name, v.summary)
	}
	for _, v := range c.verbs {
		fmt.Fprintln(w)
		fs := v.flags()
		fs.SetOutput(w)
		fs.Usage()
	}
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
}

// tokenUsage is the help text of every client command's --token flag.
const tokenUsage = "API bearer `token` for a server that requires one (default $STELE_TOKEN; create one with `stele token create`)"

// tokenFlag registers --token, defaulting to $STELE_TOKEN.
func tokenFlag(fs *flag.FlagSet) *string {
	token := os.Getenv("STELE_TOKEN")
	fs.Var(secretValue{&token}, "token", tokenUsage)
	return &token
}

// secretValue is a string flag whose value never shows in the help text
// (flag's "(default …)" would print $STELE_TOKEN).
type secretValue struct{ s *string }

func (v secretValue) String() string { return "" }

func (v secretValue) Set(s string) error {
	*v.s = s
	return nil
}

// setBearer authenticates a CLI request with token, when there is one.
func setBearer(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// answerError describes a server's error answer (status and its {"error"}
// message) for the user of a client command. A 401 says whether a token
// was sent: a refused token is not fixed by creating one, a missing one is.
func answerError(what string, status int, body []byte, token string) error {
	msg := strings.TrimSpace(string(body))
	var e struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
		if e.Field != "" && !strings.Contains(e.Error, e.Field) {
			msg += " (at " + e.Field + ")"
		}
	}
	line := fmt.Sprintf("%s: server answered %d %s: %s", what, status, http.StatusText(status), msg)
	if status == http.StatusUnauthorized {
		if token != "" {
			line += "\n  the token sent (--token or $STELE_TOKEN) was refused: it is not one of this server's tokens; check it, or ask for a token of this server"
		} else {
			line += "\n  no token was sent and this server requires one: pass --token TOKEN or set STELE_TOKEN (an admin creates one with `stele token create --data DIR --role ROLE --name NAME`)"
		}
	}
	return errors.New(line)
}

// bearerTransport sends token with every request of a client.
type bearerTransport struct{ token string }

func (t bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.token != "" {
		req = req.Clone(req.Context())
		setBearer(req, t.token)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// clientToken is the token a client built with bearerTransport sends.
func clientToken(c *http.Client) string {
	if bt, ok := c.Transport.(bearerTransport); ok {
		return bt.token
	}
	return ""
}
