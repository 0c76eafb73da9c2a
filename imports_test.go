package stele_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/stele/stele"

// forbiddenImports is the allowed import graph, written as what each room
// must not reach (docs/architecture.md draws it). Dependencies point into the
// core: sources, privacy and the readers of the log speak the contract in
// the root package and the record package; only cmd/stele, api, bench,
// export, query and the tests wire them to the store implementation.
var forbiddenImports = []struct {
	// pkgPrefix selects the packages the rule is about (module-relative).
	pkgPrefix string
	forbidden []string
	why       string
}{
	{"capture", []string{"logstore", "index", "api", "privacy", "query"},
		"a source delivers records through the capture.Sink contract and never knows the store, the index, the API or the privacy layer"},
	{"privacy", []string{"logstore", "index", "api", "capture", "query"},
		"the privacy layer seals and reveals through the contract; the store calls it, not the other way round"},
	{"deadletter", []string{"logstore", "index", "api", "capture"},
		"dead letters park what the store refused through the append contract"},
	{"projection", []string{"logstore", "index", "api", "capture"},
		"projections follow the log through the follow primitive's small interface"},
	{"publish", []string{"logstore", "index", "api", "capture"},
		"the lineage publisher follows the log through the follow primitive's small interface"},
	{"cluster", []string{"api", "capture", "index", "privacy", "query"},
		"the cluster replicates the log behind the append contract; the index and the sealer plug in through interfaces it defines"},
	{"schema", []string{"logstore", "index", "api", "capture", "privacy"},
		"the schema registry serves every record and depends on nothing that uses it"},
	{"record", []string{"logstore", "index", "api", "capture", "privacy", "schema"},
		"the record format is the bottom of the graph"},
	{"ui", []string{"logstore", "index", "api", "privacy", "query", "capture", "schema", "record"},
		"the web UI reads only through the HTTP API, like any client, so every read passes the privacy wrapper"},
	{"witness", []string{"logstore", "index", "api", "capture", "privacy", "query", "record", "schema", "auditor", "export", "follow"},
		"a witness trusts only a log's key and proofs: it speaks the checkpoint contract and never reaches the store it watches"},
	{"", []string{"cmd/stele"}, "only the binary wires parts together; nothing imports it"},
}

func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		path string
		deps []string
	}
	var pkgs []pkg
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || (fields[0] != module && !strings.HasPrefix(fields[0], module+"/")) {
			continue
		}
		pkgs = append(pkgs, pkg{path: strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/"), deps: fields[1:]})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages of the module; the test is not looking where it should", len(pkgs))
	}
	for _, p := range pkgs {
		for _, rule := range forbiddenImports {
			if rule.pkgPrefix != "" && p.path != rule.pkgPrefix && !strings.HasPrefix(p.path, rule.pkgPrefix+"/") {
				continue
			}
			if slices.Contains(testOnly, p.path) {
				continue
			}
			for _, f := range rule.forbidden {
				full := module + "/" + f
				if p.path == f {
					continue
				}
				if slices.Contains(p.deps, full) {
					t.Errorf("%s depends on %s: %s", p.path, f, rule.why)
				}
			}
		}
		// Test support may build on test support (dbztest's harness
		// methods speak capturetest's types): neither reaches non-test
		// code, which this loop checks for every other package.
		for _, only := range testOnly {
			if !slices.Contains(testOnly, p.path) && slices.Contains(p.deps, module+"/"+only) {
				t.Errorf("%s depends on %s, which is test support: import it from _test.go files only", p.path, only)
			}
		}
	}
}

// testOnly are packages of test support, outside the rules above: the
// conformance suite runs every source into the real store. In exchange no
// package's non-test code may import them, so what a source is built with
// still obeys its room's rule.
var testOnly = []string{"capture/capturetest", "capture/debezium/dbztest"}

// TestNoStdlibClash keeps package names from shadowing the standard library
// (the store was once package "log", imported as steleLog in 13 files).
func TestNoStdlibClash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	std, err := exec.Command("go", "list", "-f", "{{.Name}}", "std").Output()
	if err != nil {
		t.Fatalf("go list std: %v", err)
	}
	stdNames := map[string]bool{}
	for n := range strings.FieldsSeq(string(std)) {
		stdNames[n] = true
	}
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct{ ImportPath, Name string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Name != "main" && stdNames[p.Name] {
			t.Errorf("package %s is named %q like a standard library package", p.ImportPath, p.Name)
		}
	}
}
