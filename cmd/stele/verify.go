package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/stele/stele/auditor"
	"github.com/stele/stele/export"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/witness"
)

const verifyUsage = `--data DIR [--key VKEY] [--checkpoint-interval D] [--allow-unproven N]
       stele verify --url URL --key VKEY [--token TOKEN] [--state FILE|none] [--spot N] [--witness-policy FILE]
       stele verify --export FILE [--key VKEY] [--witness-policy FILE]

With --data, check a data directory offline: every record's checksum and
position, every leaf and tree node, every index entry and every checkpoint's
signature and root. Without --key the directory's own key is used, which
proves self-consistency only; pass the published key to pin it.
Records past the latest checkpoint are proven by nothing, so they pass only
as the tail a crash can leave: appended within one checkpoint interval
(--checkpoint-interval, the server's checkpoint_interval, default 500ms)
plus 1s, and no more than the writer commits in that time. A longer tail,
an empty checkpoints.log next to records, or a checkpoints.log cut short is
reported as unproven and fails, unless --allow-unproven N says that up to N
such records are expected (a server stopped uncleanly that has not run
since; its next start signs them).

With --url, check a running server from the outside, as an independent
auditor would, trusting only the verifier key: the latest checkpoint's
signature, its consistency with the checkpoint verified last time (kept in
the state file), and inclusion of --spot records. The state file defaults to
$XDG_CONFIG_HOME/stele/audit-<host>_<port>.json (~/.config/... when unset;
./stele-audit-<host>_<port>.json without a home directory); --state none
keeps no state. Run it periodically with the same state file. A server
that requires tokens needs one (any role) for the spot checks: --token, or
$STELE_TOKEN.

With --export, check an export made by 'stele export' offline, with its
proof FILE.proof.json: the checkpoint's signature, every row rebuilt into the
stored record and proven in the log, rows in seq order, none altered, and
for an unfiltered export none missing. Without --key the key written in the
proof is trusted, which proves self-consistency only.

With --witness-policy (--url and --export), the checkpoint must also carry
cosignatures (C2SP tlog-cosignature/v1) of the policy's witnesses meeting its
quorum (C2SP tlog-policy); each witness that cosigned is listed.

Exit status: 0 verified, 1 verification failed or error, 2 usage error.`

func runVerify(ctx context.Context, args []string) error {
	fs := newFlagSet("verify", verifyUsage)
	data := fs.String("data", "", "data `directory` to check offline")
	url := fs.String("url", "", "base `URL` of a running server to audit")
	token := tokenFlag(fs)
	exportFile := fs.String("export", "", "export `file` to check offline, with its FILE.proof.json")
	key := fs.String("key", "", "log verifier `key` (<origin>+<hash>+<base64>), obtained out of band")
	statePath := fs.String("state", "", "audit state `file` (--url only); none for no state")
	spot := fs.Int("spot", auditor.DefaultSpotChecks, "records to spot-check for inclusion (--url only)")
	interval := fs.Duration("checkpoint-interval", 500*time.Millisecond, "the server's checkpoint_interval: bounds the unsigned tail a crash can leave (--data only)")
	allow := fs.Uint64("allow-unproven", 0, "accept up to `N` records past the latest checkpoint whatever their timing (--data only)")
	policyPath := fs.String("witness-policy", "", "C2SP tlog-policy `file`: fail unless the checkpoint is cosigned by its quorum (--url and --export)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *exportFile != "" {
		if *data != "" || *url != "" || *statePath != "" || isFlagSet(fs, "spot") || isFlagSet(fs, "token") || isFlagSet(fs, "checkpoint-interval") || isFlagSet(fs, "allow-unproven") {
			return usagef("--export takes only --key and --witness-policy")
		}
		policy, err := optionalPolicy(*policyPath)
		if err != nil {
			return err
		}
		return verifyExport(ctx, *exportFile, *key, policy, stderrProgress("verifying "+*exportFile, "records", 1), os.Stdout)
	}
	switch {
	case (*data == "") == (*url == ""):
		return usagef("give exactly one of --data, --url and --export")
	case *url != "" && *key == "":
		return usagef("--url needs --key: an auditor must not trust the key served by the log it audits")
	case *data != "" && (*statePath != "" || isFlagSet(fs, "spot") || isFlagSet(fs, "token")):
		return usagef("--state, --spot and --token apply to --url only")
	case *data == "" && (isFlagSet(fs, "checkpoint-interval") || isFlagSet(fs, "allow-unproven")):
		return usagef("--checkpoint-interval and --allow-unproven apply to --data only")
	case *interval <= 0:
		return usagef("--checkpoint-interval must be positive, e.g. 500ms")
	case *spot < 1:
		return usagef("--spot must be at least 1")
	case *data != "" && *policyPath != "":
		return usagef("--witness-policy applies to --url and --export only")
	}
	if *data != "" {
		opts := logstore.VerifyOptions{VerifierKey: strings.TrimSpace(*key), CheckpointInterval: *interval, AllowUnproven: *allow}
		return verifyDir(ctx, *data, opts, stderrProgress("verifying "+*data, "MB", 1e6), os.Stdout)
	}
	policy, err := optionalPolicy(*policyPath)
	if err != nil {
		return err
	}
	return verifyURL(ctx, *url, *key, *token, *statePath, *spot, policy, stderrProgress("spot-checking records", "records", 1), os.Stdout)
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func verifyDir(ctx context.Context, dir string, opts logstore.VerifyOptions, pr *progress, stdout io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, "records.log")); err != nil {
		return fmt.Errorf("%s is not a Stele data directory: %w", dir, err)
	}
	if pr != nil {
		opts.Progress = func(done, total int64) { pr.update(done, total) }
	}
	rep, err := logstore.VerifyDir(ctx, dir, opts)
	pr.finish()
	if err != nil {
		var ve *logstore.VerifyError
		if errors.As(err, &ve) {
			fmt.Fprintf(stdout, "FAILED: %s: %v\n", dir, ve)
			return &exitError{code: exitFailure}
		}
		return fmt.Errorf("verify %s: %w", dir, err)
	}
	secs := rep.Elapsed.Seconds()
	fmt.Fprintf(stdout, "verified %d records, %.1f MB in %.2fs (%.1f MB/s)\n",
		rep.Records, float64(rep.Bytes)/1e6, secs, mbPerSec(rep.Bytes, rep.Elapsed))
	fmt.Fprintf(stdout, "%d checkpoints", rep.Checkpoints)
	if cp := rep.Latest; cp != nil {
		fmt.Fprintf(stdout, "; latest: origin %s, size %d, root %s", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
	}
	fmt.Fprintln(stdout)
	if rep.TornTail > 0 {
		fmt.Fprintf(stdout, "note: %d bytes of an unacknowledged partial write follow the last record; the next start cuts them off\n", rep.TornTail)
	}
	if rep.TornCheckpoint > 0 {
		fmt.Fprintf(stdout, "note: checkpoints.log ends in %d bytes of a checkpoint whose write was interrupted; the next start cuts them off\n", rep.TornCheckpoint)
	}
	if rep.Unproven > 0 {
		how := "appended within one checkpoint interval, as a crash leaves them"
		if opts.AllowUnproven >= rep.Unproven {
			how = "accepted by --allow-unproven"
		}
		fmt.Fprintf(stdout, "UNPROVEN: %d records after the latest checkpoint (recorded over %s) are covered by no signature yet (%s); the next start of the server signs them\n",
			rep.Unproven, rep.UnprovenSpan.Round(time.Millisecond), how)
	}
	if opts.VerifierKey == "" {
		fmt.Fprintln(stdout, "note: checked against the directory's own verifier key (self-consistency); pass --key with the published key to pin it")
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}

func optionalPolicy(path string) (*witness.Policy, error) {
	if path == "" {
		return nil, nil
	}
	return readPolicy(path)
}

// checkWitnessed reports who cosigned note and fails unless the policy's
// quorum did.
func checkWitnessed(policy *witness.Policy, note []byte, what string, stdout io.Writer) error {
	if policy == nil {
		return nil
	}
	w, err := policy.Verify(note)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %s: %v\n", what, err)
		return &exitError{code: exitFailure}
	}
	for _, c := range w.By {
		fmt.Fprintf(stdout, "witnessed by %s at %s\n", c.Witness, c.Time)
	}
	fmt.Fprintf(stdout, "witness quorum %q met\n", policy.Quorum())
	return nil
}

func verifyExport(ctx context.Context, path, key string, policy *witness.Policy, pr *progress, stdout io.Writer) error {
	rep, err := export.VerifyFile(ctx, path, export.VerifyOptions{VerifierKey: key,
		Progress: func(seq, size uint64) { pr.update(int64(seq), int64(size)) }})
	pr.finish()
	if err != nil {
		if errors.Is(err, export.ErrVerify) {
			fmt.Fprintf(stdout, "FAILED: %s: %v\n", path, err)
			return &exitError{code: exitFailure}
		}
		return fmt.Errorf("verify %s: %w", path, err)
	}
	kind := "filtered"
	if rep.Complete {
		kind = "complete"
	}
	fmt.Fprintf(stdout, "verified export %s: %d records (%s, %s, seqs below %d)\n", path, rep.Records, rep.Format, kind, rep.Size)
	if f, _ := json.Marshal(rep.Filter); !rep.Complete {
		fmt.Fprintf(stdout, "filter: %s\n", f)
	}
	cp := rep.Checkpoint
	fmt.Fprintf(stdout, "checkpoint: origin %s, size %d, root %s\n", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
	if err := checkWitnessed(policy, cp.Note, path, stdout); err != nil {
		return err
	}
	if !rep.KeyPinned {
		fmt.Fprintln(stdout, "note: checked against the verifier key written in the proof (self-consistency); pass --key with the published key to pin it")
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}

func mbPerSec(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

func verifyURL(ctx context.Context, url, key, token, statePath string, spot int, policy *witness.Policy, pr *progress, stdout io.Writer) error {
	switch statePath {
	case "none":
		statePath = ""
	case "":
		p, err := defaultStatePath(url)
		if err != nil {
			return err
		}
		statePath = p
	}
	// A server with tokens needs one for the spot checks (any role).
	opts := auditor.Options{URL: url, VerifierKey: key, StatePath: statePath, SpotChecks: spot, Token: token}
	if pr != nil {
		opts.Progress = func(done, total int) { pr.update(int64(done), int64(total)) }
	}
	rep, err := auditor.Check(ctx, opts)
	pr.finish()
	if errors.Is(err, auditor.ErrOptions) {
		return usagef("%v", err)
	}
	if auditor.HTTPStatus(err) == http.StatusUnauthorized {
		// Not a failed verification: the server wants a token for the
		// spot checks.
		return answerError("verify --url "+url, http.StatusUnauthorized, []byte(err.Error()), token)
	}
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %s: %v\n", url, err)
		return &exitError{code: exitFailure}
	}
	// The audit has already saved its state: a checkpoint that is not
	// witnessed is still the log's own word, kept to catch a later fork.
	if err := checkWitnessed(policy, []byte(rep.Checkpoint.Text), url, stdout); err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Summary())
	return nil
}

// defaultStatePath keeps one state file per audited server in the user's
// config directory, so a cron job finds the same one whatever its working
// directory.
func defaultStatePath(rawURL string) (string, error) {
	host := rawURL
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	name := "audit-" + sanitize(host) + ".json"
	dir, err := os.UserConfigDir()
	if err != nil {
		// No home directory (a bare container): the working directory.
		return "stele-" + name, nil
	}
	dir = filepath.Join(dir, "stele")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create state directory (or pass --state): %w", err)
	}
	return filepath.Join(dir, name), nil
}

// sanitize keeps a host name usable as a file name on every platform.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "server"
	}
	return b.String()
}
