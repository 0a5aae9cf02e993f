package etcd_install

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func mkTree(t *testing.T, root string, files ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f)
		if strings.HasSuffix(f, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestLayoutIgnoresLostFoundAndEarlierAsides(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etcd")
	mkTree(t, d, "lost+found/", "etcd.pre-restore-1/member/snap/db")
	l, err := layoutOf(d)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Exists || l.HasData() || l.Mount {
		t.Errorf("layout %+v: want an existing dir without data on its parent's filesystem", l)
	}
	mkTree(t, d, "member/wal/0.wal")
	if l, _ = layoutOf(d); strings.Join(l.Data, ",") != "member" {
		t.Errorf("data %v, want [member]", l.Data)
	}
	mkTree(t, root, "etcd.restore-2/member/snap/db", "etcd.pre-restore-3/member/snap/db", "etcd-wal/x", "etcdx/y")
	if l, _ = layoutOf(d); strings.Join(l.Besides, ",") != filepath.Join(root, "etcd.pre-restore-3")+","+filepath.Join(root, "etcd.restore-2") {
		t.Errorf("besides %v, want the two dirs named etcd.* next to it", l.Besides)
	}
	if l, _ := layoutOf(filepath.Join(root, "missing")); l.Exists || l.FreeBytes == 0 {
		t.Errorf("missing dir: %+v (free space is its ancestor's)", l)
	}
	if _, err := layoutOf(filepath.Join(d, "member/wal/0.wal")); err == nil {
		t.Error("a file as data dir was accepted")
	}
}

func TestMountPointDetected(t *testing.T) {
	fi, err := os.Lstat("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	if m, err := isMountPoint("/proc", fi); err != nil || !m {
		t.Errorf("/proc: mount=%v err=%v", m, err)
	}
	tmp := filepath.Join(t.TempDir(), "d")
	mkTree(t, tmp, "x")
	fi, _ = os.Lstat(tmp)
	if m, _ := isMountPoint(tmp, fi); m {
		t.Error("a temp dir counted as a mount point")
	}
}

// TestAsideAndPromote: the plain-dir path (rename) and, by marking the
// layout a mount point, the in-place path a dedicated disk takes.
func TestAsideAndPromote(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etcd")
	stage := filepath.Join(root, "etcd.restore-2")
	mkTree(t, d, "member/snap/db")
	mkTree(t, stage, "member/snap/new")
	if err := moveAside(d, "pre-restore-2", ""); err != nil {
		t.Fatal(err)
	}
	if err := promote(stage, d); err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd.pre-restore-2/member/snap/db", "etcd/member/snap/new"}
	if got := tree(t, root); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("plain dir: %v, want %v", got, want)
	}
	if err := moveAside(d, "pre-restore-2", ""); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second aside with the same suffix: %v", err)
	}

	// Inside a mount point: contents move, the dir and lost+found stay.
	m := filepath.Join(t.TempDir(), "etcd")
	mkTree(t, m, "lost+found/x", "member/snap/db", "etcd.restore-3/member/snap/new")
	if err := moveEntries(m, DirLayout{Path: m, Mount: true}.Beside("pre-restore-3"), []string{"member"}, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := promote(filepath.Join(m, "etcd.restore-3"), m); err != nil {
		t.Fatal(err)
	}
	want = []string{"etcd.pre-restore-3/member/snap/db", "lost+found/x", "member/snap/new"}
	if got := tree(t, m); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mount point: %v, want %v", got, want)
	}
	if err := promote(filepath.Join(m, "nothing"), m); err == nil {
		t.Error("promote of a missing staging dir succeeded")
	}
	mkTree(t, root, "etcd.restore-4/member/x")
	if err := promote(filepath.Join(root, "etcd.restore-4"), m); err == nil || !strings.Contains(err.Error(), "still holds member") {
		t.Errorf("promote over data: %v", err)
	}
}

// TestPrivateDirRefusesSymlinkTakesOverDir: a 0700 directory that someone
// planted as a symlink (in /var/tmp, say) is refused in plan and apply; a
// planted real directory is taken over (mode set) before use.
func TestPrivateDirRefusesSymlinkTakesOverDir(t *testing.T) {
	root := t.TempDir()
	elsewhere := filepath.Join(root, "attacker")
	mkTree(t, elsewhere+"/")
	link := filepath.Join(root, "etcdplay")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	set := Set{Dirs: []Dir{{Path: link, Mode: "0700"}}}
	if _, err := PlanSet(set); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("plan over a symlinked private dir: %v", err)
	}
	if err := ApplySet(set); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("apply over a symlinked private dir: %v", err)
	}
	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := ApplySet(Set{Dirs: []Dir{{Path: open, Mode: "0700"}}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o700 {
		t.Errorf("a planted open directory kept mode %v", fi.Mode().Perm())
	}
}
