package leanagent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// testAgent is an agent of raw; *reads counts how often its gzip was
// read out.
func testAgent(t *testing.T, raw []byte, reads *int) *Agent {
	t.Helper()
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(raw)
	w.Close()
	return &Agent{SHA256: hostfile.SumHex(raw), Size: int64(len(raw)), Platform: "linux/amd64",
		gz: func() []byte { *reads++; return gz.Bytes() }}
}

// TestUnpack: the agent lands in the cache dir executable and whole; a
// cached copy is used without reading the gzip out of the build; one
// that was edited or cut short is replaced, not sent.
func TestUnpack(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("#!/bin/sh\necho lean agent\n")
	reads := 0
	a := testAgent(t, raw, &reads)
	p, err := a.unpack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "etcdplay-agent-"+a.SHA256[:16]); p != want {
		t.Fatalf("path %s, want %s", p, want)
	}
	check := func() {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s holds %q (%v), want %q", p, got, err, raw)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o755 {
			t.Fatalf("mode %v", st.Mode())
		}
	}
	check()
	reads = 0
	if _, err := a.unpack(dir); err != nil {
		t.Fatal(err)
	}
	if reads != 0 {
		t.Fatal("a warm unpack read the gzipped agent")
	}
	for _, bad := range [][]byte{raw[:5], append(append([]byte{}, raw...), "planted"...)} {
		if err := os.WriteFile(p, bad, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := a.unpack(dir); err != nil {
			t.Fatal(err)
		}
		check()
	}
}

// TestUnpackRefusesAMismatchedBuild: an embedded agent that does not hash
// to what the build recorded is never written, let alone sent.
func TestUnpackRefusesAMismatchedBuild(t *testing.T) {
	dir := t.TempDir()
	var reads int
	a := testAgent(t, []byte("one"), &reads)
	a.SHA256 = testAgent(t, []byte("two"), &reads).SHA256
	if _, err := a.unpack(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Fatalf("wrote %v", es)
	}
}

// TestEmbeddedMatchesItsRecord: when this build embeds an agent (after
// make build), it unpacks to what the build recorded.
func TestEmbeddedMatchesItsRecord(t *testing.T) {
	a := Embedded()
	if a == nil {
		t.Skip("no lean agent embedded: go generate ./internal/leanagent (make build) first")
	}
	if _, err := a.unpack(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
