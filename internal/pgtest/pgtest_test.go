package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestNewWithoutBinaries(t *testing.T) {
	s, err := New(context.Background(), Options{BinDir: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("New without initdb: %v, %v; want ErrNotInstalled", s, err)
	}
}

// TestNewStop: a server made without a testing.TB serves queries, reports
// failing statements, and Stop removes its folder.
func TestNewStop(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Options{})
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExecIn(ctx, "postgres", "CREATE DATABASE x"); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecIn(ctx, "x", "CREATE TABLE t (id int)", "SELECT * FROM missing"); err == nil {
		t.Error("a failing statement returned no error")
	}
	if err := s.ExecIn(ctx, "x", "SELECT * FROM t"); err != nil {
		t.Errorf("the statements before the failing one did not run: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop, %s: %v", s.Dir, err)
	}
	if err := s.ExecIn(ctx, "postgres", "SELECT 1"); err == nil {
		t.Error("the stopped server still answers")
	}
}
