package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"
	"gopkg.in/yaml.v3"

	"github.com/stele/stele/follow"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/projection"
)

const projectionsAbout = `Projections are read models declared under projections: in the config file
and kept current by the server. "list" shows each one and how far it has
got; "rebuild NAME" clears one and folds the whole log into it again (stop
the server first). Progress goes to stderr.`

// projectionKeys are the keys of one entry of projections: in the YAML file.
func projectionKeys() []string {
	return []string{"name", "filter", "key", "fold", "value", "initial"}
}

// parseProjectionsYAML reads the projections: list and compiles every
// expression, so a mistake is reported at load time with the file, the
// line, the projection and the field.
func parseProjectionsYAML(path string, v *yaml.Node) ([]projection.Definition, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("config file %s: line %d: projections: want a list of projections", path, v.Line)
	}
	var out []projection.Definition
	names := map[string]int{}
	for i, item := range v.Content {
		where := fmt.Sprintf("config file %s: line %d: projections[%d]", path, item.Line, i)
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: want a mapping with name, filter, key, fold, …", where)
		}
		var d projection.Definition
		seen := map[string]bool{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, val := item.Content[j], item.Content[j+1]
			field := map[string]*string{"name": &d.Name, "filter": &d.Filter, "key": &d.Key, "value": &d.Value, "initial": &d.Initial}
			var fold string
			field["fold"] = &fold
			dst, ok := field[k.Value]
			if !ok {
				return nil, fmt.Errorf("%s: unknown key %q (known keys: %s)", where, k.Value, strings.Join(projectionKeys(), ", "))
			}
			if seen[k.Value] {
				return nil, fmt.Errorf("%s: key %q given twice", where, k.Value)
			}
			seen[k.Value] = true
			if val.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: line %d: %s: want a single value (quote a CEL expression that starts with { or [)", where, val.Line, k.Value)
			}
			*dst = val.Value
			if k.Value == "fold" {
				d.Fold = projection.Fold(fold)
			}
		}
		if _, err := projection.Compile([]projection.Definition{d}); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if prev, dup := names[d.Name]; dup {
			return nil, fmt.Errorf("%s: projection %q is already defined at projections[%d]", where, d.Name, prev)
		}
		names[d.Name] = i
		out = append(out, d)
	}
	return out, nil
}

func (c Config) projectionList() []projection.Definition {
	if c.Projections == nil {
		return nil
	}
	return *c.Projections
}

func projectionsFlags(verb, synopsis string) (*flag.FlagSet, *configFlags) {
	fs := newFlagSet("projections "+verb, synopsis)
	return fs, addConfigFlags(fs, "data", "log_level")
}

func runProjections(ctx context.Context, args []string) error {
	return verbCommand{
		name: "projections",
		verbs: []verbSpec{
			{"list", "each configured projection, how far it has got, its keys",
				func() *flag.FlagSet { fs, _ := projectionsFlags("list", "[--config FILE] [--data DIR]"); return fs },
				func(args []string) error { return runProjectionsVerb(ctx, "list", args) }},
			{"rebuild", "clear projection NAME and fold the whole log into it again (server stopped)",
				func() *flag.FlagSet {
					fs, _ := projectionsFlags("rebuild", "NAME [--config FILE] [--data DIR]")
					return fs
				},
				func(args []string) error { return runProjectionsVerb(ctx, "rebuild", args) }},
		},
		about: projectionsAbout,
	}.run(args)
}

func runProjectionsVerb(ctx context.Context, verb string, args []string) error {
	synopsis, want := "[--config FILE] [--data DIR]", 0
	if verb == "rebuild" {
		synopsis, want = "NAME [--config FILE] [--data DIR]", 1
	}
	fs, cf := projectionsFlags(verb, synopsis)
	pos, err := parseMixed(fs, args, -1)
	switch {
	case err != nil:
		return err
	case want == 1 && len(pos) == 0:
		return usagef("rebuild: want the projection's name: stele projections rebuild NAME")
	case len(pos) > want:
		return usagef("unexpected argument %q", pos[want])
	}
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	if err := requireDataDir(cfg.Data); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if verb == "list" {
		return listProjections(cfg, os.Stdout)
	}
	return rebuildProjection(ctx, cfg, pos[0], logger, stderrProgress("rebuilding "+pos[0], "records", 1), os.Stdout)
}

func compileConfigured(cfg Config) (*projection.Set, error) {
	defs := cfg.projectionList()
	if len(defs) == 0 {
		return nil, errors.New("no projections are configured: add a projections: list to the config file (--config or STELE_CONFIG)")
	}
	return projection.Compile(defs)
}

func listProjections(cfg Config, stdout io.Writer) error {
	set, err := compileConfigured(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Join(cfg.Data, "projections")
	var infos []projection.Info
	if _, err := os.Stat(dir); err == nil {
		st, err := projection.Open(dir, set, projection.Options{ReadOnly: true})
		if err != nil {
			return fmt.Errorf("%w (is the server running? then ask it: GET /v1/projections)", err)
		}
		infos = st.List()
		st.Close()
	} else {
		for _, d := range set.Definitions() {
			infos = append(infos, projection.Info{Definition: d})
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFOLD\tAPPLIED\tKEYS\tSKIPPED")
	for _, in := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", in.Name, in.Fold, in.Applied, in.Keys, in.Skipped)
	}
	return tw.Flush()
}

func rebuildProjection(ctx context.Context, cfg Config, name string, logger *slog.Logger, pr *progress, stdout io.Writer) error {
	set, err := compileConfigured(cfg)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, "records.log")); err != nil {
		return fmt.Errorf("%s is not a Stele data directory: %w", cfg.Data, err)
	}
	lock, err := lockDataDir(cfg.Data)
	if err != nil {
		return err
	}
	defer lock.Close()
	vkey, err := logstore.LoadVerifierKey(cfg.Data)
	if err != nil {
		return err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("verifier key in %s: %w", cfg.Data, err)
	}
	st, err := openProjections(cfg.Data, set, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Info(name); err != nil {
		return usagef("%v (configured: %s)", err, strings.Join(set.Names(), ", "))
	}
	signer, err := checkpointSigner(ctx, cfg, v.Name())
	if err != nil {
		return err
	}
	// The rebuild appends nothing, but opening the log recovers it, and
	// recovery must adopt only batches this log's writer sealed.
	_, batches, closeSealer, err := offlineSealer(ctx, cfg, v.Name(), logger)
	if err != nil {
		return err
	}
	defer closeSealer()
	store, err := logstore.Open(ctx, cfg.Data, logstore.Options{Origin: v.Name(), BatchSealer: batches, Logger: logger, CheckpointSigner: signer, Lock: lock})
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer store.Close()

	start := time.Now()
	err = st.Rebuild(ctx, name, store, func(n, total uint64) { pr.update(int64(n), int64(total)) })
	pr.finish()
	if err != nil {
		return err
	}
	info, err := st.Info(name)
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "rebuilt projection %s: %d records, %d keys, %d skipped, in %s (%.0f records/s)\n",
		name, info.Applied, info.Keys, info.Skipped, el.Round(time.Millisecond), float64(info.Applied)/max(el.Seconds(), 1e-9))
	return nil
}

// openProjections opens <data>/projections, setting a damaged database
// aside: it is derived data, rebuilt from the log.
func openProjections(data string, set *projection.Set, logger *slog.Logger) (*projection.Store, error) {
	dir := filepath.Join(data, "projections")
	st, err := projection.Open(dir, set, projection.Options{Logger: logger})
	if errors.Is(err, projection.ErrDamaged) {
		return setProjectionsAside(data, set, err, logger)
	}
	return st, err
}

func setProjectionsAside(data string, set *projection.Set, cause error, logger *slog.Logger) (*projection.Store, error) {
	dir := filepath.Join(data, "projections")
	aside := filepath.Join(data, "projections.corrupt-"+strconv.FormatInt(time.Now().Unix(), 10))
	logger.Warn("projections cannot be used; setting them aside and rebuilding them from the log", "err", cause, "moved_to", aside)
	if err := os.Rename(dir, aside); err != nil {
		return nil, fmt.Errorf("open projections: %w (and moving them aside failed: %w)", cause, err)
	}
	st, err := projection.Open(dir, set, projection.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("open fresh projections: %w", err)
	}
	return st, nil
}

// startProjections opens the configured projections and follows the log
// in the background. It returns nil when none are configured; stop ends
// the follower and closes the database.
func startProjections(ctx context.Context, cfg Config, store *logstore.Store, follows *follow.Metrics, logger *slog.Logger) (st *projection.Store, stop func(), err error) {
	defs := cfg.projectionList()
	if len(defs) == 0 {
		return nil, func() {}, nil
	}
	set, err := projection.Compile(defs)
	if err != nil {
		return nil, nil, err
	}
	if st, err = openProjections(cfg.Data, set, logger); err != nil {
		return nil, nil, err
	}
	if applied := st.Applied(); applied > store.Size() {
		st.Close()
		if st, err = setProjectionsAside(cfg.Data, set, fmt.Errorf("projections have folded %d records but the log holds %d", applied, store.Size()), logger); err != nil {
			return nil, nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = st.Follow(ctx, store, projection.FollowOptions{Metrics: follows}) })
	logger.Info("projections following the log", "projections", strings.Join(set.Names(), ","), "applied", st.Applied(), "records", store.Size())
	return st, func() {
		cancel()
		wg.Wait()
		if err := st.Close(); err != nil {
			logger.Error("close projections", "err", err)
		}
	}, nil
}
