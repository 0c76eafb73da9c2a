package schema

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const ordersV1 = `{"type": "object", "properties": {"id": {"type": "integer"}, "total": {"type": "integer"}}}`
const ordersV2 = `{"type": "object", "properties": {"id": {"type": "integer"}, "total": {"type": "number"}}}`

func TestRegistryPutAndRead(t *testing.T) {
	ctx := context.Background()
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Latest("app.orders"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest on empty registry: %v, want ErrNotFound", err)
	}
	v, created, err := r.Put(ctx, "app.orders", []byte(ordersV1))
	if err != nil || v != 1 || !created {
		t.Fatalf("Put v1 = %d, %v, %v", v, created, err)
	}
	// The same schema, formatted differently: idempotent.
	v, created, err = r.Put(ctx, "app.orders", []byte(strings.ReplaceAll(ordersV1, " ", "\n")))
	if err != nil || v != 1 || created {
		t.Fatalf("Put identical = %d, %v, %v; want 1, false, nil", v, created, err)
	}
	v, created, err = r.Put(ctx, "app.orders", []byte(ordersV2))
	if err != nil || v != 2 || !created {
		t.Fatalf("Put v2 = %d, %v, %v", v, created, err)
	}
	// Back to integer is a narrowing: refused, and nothing is stored.
	if _, _, err := r.Put(ctx, "app.orders", []byte(ordersV1)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Put narrowing: %v, want ErrIncompatible", err)
	}
	if _, _, err := r.Put(ctx, "app.orders", []byte(`{"type": 1}`)); !errors.Is(err, ErrInvalidSchema) {
		t.Fatalf("Put invalid: %v, want ErrInvalidSchema", err)
	}
	if _, _, err := r.Put(ctx, "orders", []byte(ordersV1)); !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("Put bad subject: %v, want ErrInvalidSubject", err)
	}
	latest, err := r.Latest("app.orders")
	if err != nil || latest.Version != 2 || latest.Subject != "app.orders" {
		t.Fatalf("Latest = %+v, %v", latest, err)
	}
	s1, err := r.Version("app.orders", 1)
	if err != nil || s1.Version != 1 {
		t.Fatalf("Version 1 = %+v, %v", s1, err)
	}
	if err := s1.Validate([]byte(`{"total": 1.5}`)); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("version 1 accepted a number total: %v", err)
	}
	if err := latest.Validate([]byte(`{"total": 1.5}`)); err != nil {
		t.Errorf("version 2 refused a number total: %v", err)
	}
	for _, n := range []int{0, 3} {
		if _, err := r.Version("app.orders", n); !errors.Is(err, ErrNotFound) {
			t.Errorf("Version %d: %v, want ErrNotFound", n, err)
		}
	}
	if got := r.Subjects(); !slices.Equal(got, []string{"app.orders"}) {
		t.Errorf("Subjects = %v", got)
	}
}

func TestRegistryPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{ordersV1, ordersV2} {
		if _, _, err := r.Put(ctx, "app.orders", []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Put(ctx, "crm.public.customers", []byte(customers)); err != nil {
		t.Fatal(err)
	}
	// A Put that crashed between write and rename leaves a temporary file.
	if err := os.WriteFile(filepath.Join(dir, "app.orders", "000003.json.tmp"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got := r2.Subjects(); !slices.Equal(got, []string{"app.orders", "crm.public.customers"}) {
		t.Errorf("Subjects after reopen = %v", got)
	}
	for _, n := range []int{1, 2} {
		a, _ := r.Version("app.orders", n)
		b, err := r2.Version("app.orders", n)
		if err != nil || string(a.Raw) != string(b.Raw) {
			t.Errorf("version %d after reopen = %v, %v", n, b, err)
		}
	}
	c, err := r2.Latest("crm.public.customers")
	if err != nil || len(c.Groups) != 2 {
		t.Fatalf("customers after reopen: %+v, %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "app.orders", "000003.json.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temporary file not removed: %v", err)
	}
	v, created, err := r2.Put(ctx, "app.orders", []byte(ordersV2))
	if err != nil || v != 2 || created {
		t.Errorf("Put identical after reopen = %d, %v, %v", v, created, err)
	}
	v, _, err = r2.Put(ctx, "app.orders", []byte(`{"type": "object", "properties": {"id": {"type": "integer"}, "total": {"type": "number"}, "note": {"type": "string"}}}`))
	if err != nil || v != 3 {
		t.Errorf("Put v3 after reopen = %d, %v", v, err)
	}
}

func TestRegistryOpenRefusesDamage(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(dir string) error{
		"gap": func(dir string) error {
			return os.Rename(filepath.Join(dir, "app.orders", "000001.json"), filepath.Join(dir, "app.orders", "000002.json"))
		},
		"stray file": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "app.orders", "notes.txt"), nil, 0o644)
		},
		"corrupt version": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "app.orders", "000001.json"), []byte(`{"type": 7}`), 0o644)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.Put(ctx, "app.orders", []byte(ordersV1)); err != nil {
				t.Fatal(err)
			}
			if err := damage(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "app.orders") {
				t.Errorf("Open of a damaged registry: %v, want an error naming the subject", err)
			}
		})
	}
}

func TestRegistryConcurrent(t *testing.T) {
	ctx := context.Background()
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Each writer adds optional properties to its own subject, all writers
	// race on a shared subject with the same schema, readers read.
	const writers, steps = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*steps*3)
	for w := range writers {
		wg.Go(func() {
			subject := fmt.Sprintf("app.t%d", w)
			props := `"id": {"type": "integer"}`
			for i := range steps {
				props += fmt.Sprintf(`, "p%d": {"type": "string"}`, i)
				v, _, err := r.Put(ctx, subject, []byte(`{"type": "object", "properties": {`+props+`}}`))
				if err == nil && v != i+1 {
					err = fmt.Errorf("%s: version %d, want %d", subject, v, i+1)
				}
				if err != nil {
					errs <- err
				}
				if _, _, err := r.Put(ctx, "app.shared", []byte(ordersV1)); err != nil {
					errs <- err
				}
				if s, err := r.Latest(subject); err != nil {
					errs <- err
				} else if err := s.Validate([]byte(`{"id": 1}`)); err != nil {
					errs <- err
				}
				_ = r.Subjects()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s, err := r.Latest("app.shared"); err != nil || s.Version != 1 {
		t.Errorf("shared subject: %+v, %v; want one version", s, err)
	}
	if n := len(r.Subjects()); n != writers+1 {
		t.Errorf("%d subjects, want %d", n, writers+1)
	}
}
