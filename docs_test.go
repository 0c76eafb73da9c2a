package stele_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// markdownFiles are the README and every document under docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md"}, docs...)
}

// TestDocsCodeFencesClosed: every code fence in the README and docs/ is
// closed before the next one opens and before the file ends. An unclosed
// fence swallows the headings after it (docs/api.md once lost
// "## GET /v1/projections" that way).
func TestDocsCodeFencesClosed(t *testing.T) {
	for _, path := range markdownFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		open := 0 // line of the open fence, 0 outside one
		for i, line := range strings.Split(string(data), "\n") {
			n := i + 1
			trimmed := strings.TrimSpace(line)
			if !strings.HasPrefix(trimmed, "```") {
				continue
			}
			info := strings.TrimSpace(strings.TrimLeft(trimmed, "`"))
			switch {
			case open == 0:
				open = n
			case info != "":
				t.Errorf("%s:%d: fence %q opens while the fence of line %d is still open", path, n, trimmed, open)
				open = n
			default:
				open = 0
			}
		}
		if open != 0 {
			t.Errorf("%s:%d: code fence never closed", path, open)
		}
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]*)\)`)
	mdHeading = regexp.MustCompile("(?m)^#{1,6} (.+)$")
)

// githubAnchor is the anchor GitHub gives a heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(string(data), -1) {
		out[githubAnchor(strings.ReplaceAll(m[1], "`", ""))] = true
	}
	return out
}

// TestDocsLinksResolve: every relative link in the README and docs/ names
// a file of the tree, and every #anchor a heading of its file.
func TestDocsLinksResolve(t *testing.T) {
	for _, path := range markdownFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") || link == "" {
				continue
			}
			file, anchor, _ := strings.Cut(link, "#")
			target := path
			if file != "" {
				target = filepath.Join(filepath.Dir(path), file)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %q: %v", path, link, err)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(target, ".md") && !anchors(t, target)[anchor] {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", path, link, target, anchor)
			}
		}
	}
}

// citedFile finds file names in comments: docs/api.md, record/ingest.go, ….
var citedFile = regexp.MustCompile(`(?:^|[\s("'` + "`" + `])((?:[\w-]+/)*[\w-]+\.(?:md|go|yaml|sh))\b`)

// TestCommentsCiteExistingFiles: a file a Go comment names exists, relative
// to the module root or to the commenting file's directory.
func TestCommentsCiteExistingFiles(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "*.go").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			_, comment, ok := strings.Cut(line, "//")
			if !ok {
				continue
			}
			for _, m := range citedFile.FindAllStringSubmatch(comment, -1) {
				name := m[1]
				if _, err := os.Stat(name); err == nil {
					continue
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(f), name)); err == nil {
					continue
				}
				t.Errorf("%s:%d: the comment cites %s, which is not in the tree", f, i+1, name)
			}
		}
	}
}

// TestDocsContentsListEachSectionOnce: a document's table of contents (the
// links before its first section) names each target once.
func TestDocsContentsListEachSectionOnce(t *testing.T) {
	for _, path := range markdownFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(string(data), "\n## ")
		seen := map[string]bool{}
		for _, m := range mdLink.FindAllStringSubmatch(head, -1) {
			if strings.HasPrefix(m[1], "#") && seen[m[1]] {
				t.Errorf("%s: the contents list %s twice", path, m[1])
			}
			seen[m[1]] = true
		}
	}
}
