package main

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadTest(t *testing.T, yaml string, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := newFlagSet("serve", "")
	fs.SetOutput(io.Discard)
	cf := addConfigFlags(fs)
	if yaml != "" {
		path := filepath.Join(t.TempDir(), "stele.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return cf.load(func(k string) string { return env[k] })
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadTest(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != defaultConfig() {
		t.Fatalf("got %+v, want defaults %+v", cfg, defaultConfig())
	}
	if cfg.Addr != "127.0.0.1:7070" || cfg.Data != "./stele-data" || cfg.Origin != "stele.local/log" ||
		cfg.LogLevel != slog.LevelInfo || cfg.CheckpointInterval != 500*time.Millisecond ||
		cfg.MaxBodyBytes != 16<<20 || cfg.MaxBatch != 10000 || cfg.MemoryLimit != 96<<20 {
		t.Fatalf("defaults changed: %+v", cfg)
	}
}

func TestConfigPrecedence(t *testing.T) {
	yaml := `
data: /from/file
addr: 127.0.0.1:1111
origin: file.example/log
log_level: debug
checkpoint_interval: 250ms
max_body_bytes: 1MiB
max_batch: 50
memory_limit: 64MiB
`
	env := map[string]string{
		"STELE_ADDR":                "127.0.0.1:2222",
		"STELE_ORIGIN":              "env.example/log",
		"STELE_CHECKPOINT_INTERVAL": "100ms",
	}
	cfg, err := loadTest(t, yaml, env, "--origin", "flag.example/log")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Data:               "/from/file",       // file over default
		Addr:               "127.0.0.1:2222",   // env over file
		Origin:             "flag.example/log", // flag over env
		LogLevel:           slog.LevelDebug,
		CheckpointInterval: 100 * time.Millisecond,
		MaxBodyBytes:       1 << 20,
		MaxBatch:           50,
		MemoryLimit:        64 << 20,
		RetentionInterval:  time.Hour, // default
		WitnessTimeout:     10 * time.Second,
	}
	if cfg != want {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestConfigMemoryLimitOff(t *testing.T) {
	cfg, err := loadTest(t, "memory_limit: 1GiB\n", map[string]string{"STELE_MEMORY_LIMIT": "off"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryLimit != 0 {
		t.Fatalf("memory limit %d, want 0 (none) from STELE_MEMORY_LIMIT=off", cfg.MemoryLimit)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("max_batch: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadTest(t, "", map[string]string{"STELE_CONFIG": path})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBatch != 7 {
		t.Fatalf("max_batch %d, want 7 from $STELE_CONFIG", cfg.MaxBatch)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		env   map[string]string
		args  []string
		wants []string // substrings of the error
	}{
		{name: "unknown key", yaml: "data: x\nlisten: 1.2.3.4:5\n", wants: []string{`unknown key "listen"`, "stele.yaml", "line 2"}},
		{name: "bad duration in file", yaml: "checkpoint_interval: soon\n", wants: []string{"checkpoint_interval", "stele.yaml", "duration"}},
		{name: "negative duration", yaml: "checkpoint_interval: -1s\n", wants: []string{"checkpoint_interval", "positive"}},
		{name: "bad duration in env", env: map[string]string{"STELE_CHECKPOINT_INTERVAL": "5"}, wants: []string{"STELE_CHECKPOINT_INTERVAL", "duration"}},
		{name: "bad duration flag", args: []string{"--checkpoint-interval", "fast"}, wants: []string{"--checkpoint-interval", "duration"}},
		{name: "bad level", yaml: "log_level: loud\n", wants: []string{"log_level"}},
		{name: "bad batch", env: map[string]string{"STELE_MAX_BATCH": "0"}, wants: []string{"STELE_MAX_BATCH", "positive"}},
		{name: "bad bytes", args: []string{"--max-body-bytes", "lots"}, wants: []string{"--max-body-bytes", "bytes"}},
		{name: "bad memory limit", args: []string{"--memory-limit", "-5MiB"}, wants: []string{"--memory-limit", "bytes", "or off"}},
		{name: "addr without port", yaml: "addr: localhost\n", wants: []string{"addr", "host:port"}},
		{name: "nested value", yaml: "data:\n  path: x\n", wants: []string{"data", "single value"}},
		{name: "not a mapping", yaml: "- data\n", wants: []string{"mapping"}},
		{name: "duplicate key", yaml: "data: a\ndata: b\n", wants: []string{"data"}},
		{name: "malformed yaml", yaml: "data: [\n", wants: []string{"stele.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTest(t, tc.yaml, tc.env, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigMissingFile(t *testing.T) {
	flags := newFlagSet("serve", "")
	cf := addConfigFlags(flags)
	if err := flags.Parse([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cf.load(func(string) string { return "" }); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	var stderr strings.Builder
	if code := run(t.Context(), []string{"frobnicate"}, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) || !strings.Contains(stderr.String(), "serve") {
		t.Fatalf("stderr %q lacks the error or the usage", stderr.String())
	}
}
