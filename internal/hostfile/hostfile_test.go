package hostfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	tests := []struct {
		name      string
		existing  *os.FileMode // nil: no file before
		owner     [2]int       // existing file's uid, gid
		mode      os.FileMode
		uid, gid  int
		wantMode  os.FileMode
		wantOwner [2]int
	}{
		{"new file default mode", nil, [2]int{}, KeepMode, -1, -1, DefaultMode, [2]int{os.Getuid(), os.Getgid()}},
		{"new file explicit mode and owner", nil, [2]int{}, 0o600, 1234, 2345, 0o600, [2]int{1234, 2345}},
		{"keeps mode and owner", ptr(0o640), [2]int{1234, 2345}, KeepMode, -1, -1, 0o640, [2]int{1234, 2345}},
		{"keeps owner, changes mode", ptr(0o644), [2]int{1234, 2345}, 0o600, -1, -1, 0o600, [2]int{1234, 2345}},
		{"changes group only", ptr(0o644), [2]int{1234, 2345}, KeepMode, -1, 99, 0o644, [2]int{1234, 99}},
		{"setgid survives chown", ptr(0o644), [2]int{0, 0}, 0o644 | os.ModeSetgid, 1234, 1234, 0o644 | os.ModeSetgid, [2]int{1234, 1234}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Getuid() != 0 && (tt.uid >= 0 || tt.existing != nil) {
				t.Skip("chown needs root")
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "f.conf")
			if tt.existing != nil {
				if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				must(t, os.Chown(p, tt.owner[0], tt.owner[1]))
				must(t, os.Chmod(p, *tt.existing))
			}
			must(t, WriteAtomic(p, []byte("new\n"), tt.mode, tt.uid, tt.gid))
			st, err := State(p)
			must(t, err)
			if string(st.Content) != "new\n" || st.SHA256 != SumHex([]byte("new\n")) {
				t.Errorf("content %q sha %s", st.Content, st.SHA256)
			}
			if st.Perm() != tt.wantMode {
				t.Errorf("mode %v, want %v", st.Perm(), tt.wantMode)
			}
			if st.UID != tt.wantOwner[0] || st.GID != tt.wantOwner[1] {
				t.Errorf("owner %d:%d, want %d:%d", st.UID, st.GID, tt.wantOwner[0], tt.wantOwner[1])
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("temp file left behind: %v", ents)
			}
		})
	}
}

func TestWriteAtomicRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	err := WriteAtomic(dir, []byte("x"), KeepMode, -1, -1)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}

func TestState(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	must(t, os.WriteFile(f, []byte("hello"), 0o644))
	must(t, os.Symlink("f", filepath.Join(dir, "l")))
	big := filepath.Join(dir, "big")
	must(t, os.WriteFile(big, bytes.Repeat([]byte("a"), MaxContent+1), 0o644))

	st, err := State(filepath.Join(dir, "missing"))
	must(t, err)
	if st.Exists {
		t.Error("missing path exists")
	}
	st, err = State(filepath.Join(dir, "l"))
	must(t, err)
	if !st.IsLink() || st.LinkTarget != "f" || st.HasContent {
		t.Errorf("link state %+v", st)
	}
	st, err = StateFollow(filepath.Join(dir, "l"))
	must(t, err)
	if !st.IsRegular() || string(st.Content) != "hello" {
		t.Errorf("followed state %+v", st)
	}
	st, err = State(big)
	must(t, err)
	if st.HasContent || st.Content != nil || st.SHA256 != SumHex(bytes.Repeat([]byte("a"), MaxContent+1)) {
		t.Errorf("big file: HasContent=%v sha=%s", st.HasContent, st.SHA256)
	}
	st, err = State(dir)
	must(t, err)
	if !st.IsDir() {
		t.Error("dir not a dir")
	}
}

func TestModeArg(t *testing.T) {
	tests := []struct {
		in      any
		want    string
		wantErr bool
	}{
		{420, "0644", false}, // YAML mode: 0644
		{float64(384), "0600", false},
		{"0644", "0644", false},
		{"644", "0644", false},
		{"1777", "1777", false},
		{"u=rw,g=r,o=", "u=rw,g=r,o=", false},
		{"u+x", "u+x", false},
		{nil, "", false},
		{"", "", false},
		{"0999", "", true},
		{"u~x", "", true},
		{70000, "", true},
		{true, "", true},
	}
	for _, tt := range tests {
		got, err := ModeArg(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ModeArg(%#v) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		spec  string
		cur   os.FileMode
		isDir bool
		want  os.FileMode
	}{
		{"0644", 0o777, false, 0o644},
		{"4755", 0, false, 0o755 | os.ModeSetuid},
		{"u=rw,g=r,o=", 0o777, false, 0o640},
		{"u+x", 0o644, false, 0o744},
		{"go-w", 0o666, false, 0o644},
		{"a+X", 0o644, true, 0o755},
		{"a+X", 0o644, false, 0o644},
		{"a+X", 0o744, false, 0o755},
		{"+t", 0o777, true, 0o777 | os.ModeSticky},
		{"u=rwx", 0o755 | os.ModeSetuid, false, 0o755},
		{"g+s", 0o755, true, 0o755 | os.ModeSetgid},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.spec, tt.cur, tt.isDir)
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q, %v) = %v, %v; want %v", tt.spec, tt.cur, got, err, tt.want)
		}
	}
}

func TestAttrs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown needs root")
	}
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, nil, 0o644))
	st, _ := State(p)
	w, err := Attrs{Mode: "0600", Owner: "0", Group: "1234"}.Resolve(st, DefaultMode, false)
	must(t, err)
	got := strings.Join(w.Diff(st), "; ")
	if want := "mode 0644->0600; group root->1234"; got != want {
		t.Errorf("diff %q, want %q", got, want)
	}
	must(t, w.Set(p))
	st, _ = State(p)
	if d := w.Diff(st); len(d) != 0 {
		t.Errorf("after Set still differs: %v", d)
	}
	if _, err := (Attrs{Owner: "no-such-user-etcdplay"}).Resolve(st, DefaultMode, false); err == nil {
		t.Error("unknown owner accepted")
	}
}

func ptr(m os.FileMode) *os.FileMode { return &m }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestStampMovesWithEveryChange(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent")
	if err := os.WriteFile(p, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := Stamp(p)
	if before == "" || Stamp(p) != before {
		t.Fatalf("stamp of an unchanged file: %q then %q", before, Stamp(p))
	}
	changes := []struct {
		name   string
		change func() error
	}{
		// mtime set back as a tar extraction would; a same-size write in
		// the same clock tick as the stamp is the one change it can miss,
		// so this one grows the file and the test cannot flake.
		{"rewritten in place, mtime set back", func() error {
			fi, _ := os.Stat(p)
			if err := os.WriteFile(p, []byte("three"), 0o755); err != nil {
				return err
			}
			return os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}},
		{"chmod", func() error { return os.Chmod(p, 0o644) }},
		{"replaced", func() error { return WriteAtomic(p, []byte("two"), 0o644, -1, -1) }},
	}
	for _, c := range changes {
		if err := c.change(); err != nil {
			t.Fatal(err)
		}
		if now := Stamp(p); now == before || now == "" {
			t.Errorf("%s: stamp %q, was %q", c.name, now, before)
		} else {
			before = now
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "missing")} {
		if s := Stamp(p); s != "" {
			t.Errorf("Stamp(%s) = %q, want \"\" (not a regular file)", p, s)
		}
	}
}
