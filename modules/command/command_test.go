package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		// Expectations are Python 3's shlex.split output for the same input.
		{"echo hi", []string{"echo", "hi"}},
		{"  a   b\tc ", []string{"a", "b", "c"}},
		{`echo 'a b' "c d"`, []string{"echo", "a b", "c d"}},
		{`echo "a \"q\" \$x \n"`, []string{"echo", `a "q" \$x \n`}},
		{`echo a\ b`, []string{"echo", "a b"}},
		{`echo ''`, []string{"echo", ""}},
		{`echo x#y # comment`, []string{"echo", "x#y", "#", "comment"}},
		{`etcdctl --endpoints=https://a:2379,https://b:2379 member list`, []string{"etcdctl", "--endpoints=https://a:2379,https://b:2379", "member", "list"}},
		{`echo "\$x"`, []string{"echo", `\$x`}},
		{"a\\\nb", []string{"a\nb"}},
		{`"a\\b"`, []string{`a\b`}},
		{"\"a\\`b\"", []string{"a\\`b"}},
		{"\"a\\\nb\"", []string{"a\\\nb"}},
		{`it\'s`, []string{"it's"}},
		{`'a\b'`, []string{`a\b`}},
	}
	for _, tt := range tests {
		got, err := Split(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if back, _ := Split(Quote(got)); !reflect.DeepEqual(back, got) {
			t.Errorf("Quote(%q) = %q does not split back", got, Quote(got))
		}
	}
	for _, bad := range []string{`echo 'a`, `echo "a`, `echo a\`} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q) accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []moduletest.ArgCase{
		{Args: modules.Args{"cmd": "true"}, WantArg: ""},
		{Args: modules.Args{"cmd": []any{"echo", "a b"}}, WantArg: ""},
		{Args: modules.Args{"argv": []any{"echo"}}, WantArg: ""},
		{Args: modules.Args{}, WantArg: "cmd"},
		{Args: modules.Args{"cmd": ""}, WantArg: "cmd"},
		{Args: modules.Args{"cmd": "echo 'x"}, WantArg: "cmd"},
		{Args: modules.Args{"cmd": "x", "argv": []any{"y"}}, WantArg: "argv"},
		{Args: modules.Args{"cmd": "x", "creates": "/a", "chdr": "/"}, WantArg: "chdr"},
	}
	moduletest.CheckValidate(t, Module{}, tests)
	err := Module{}.Validate(modules.Args{"cmd": "x", "chdr": "/"})
	if ae := (*modules.ArgError)(nil); !errors.As(err, &ae) || ae.Hint != "chdir" {
		t.Errorf("no did-you-mean for chdr: %v", err)
	}
}

func TestPlanApply(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "done")
	if err := os.WriteFile(filepath.Join(dir, "present"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       modules.Args
		wantChange bool
		wantStatus modules.Status
		wantData   map[string]any
	}{
		{"runs", modules.Args{"cmd": "echo 'hello world'"}, true, modules.StatusChanged,
			map[string]any{"stdout": "hello world", "stderr": "", "rc": 0}},
		{"argv list", modules.Args{"argv": []any{"printf", "%s|", "a b", "$HOME"}}, true, modules.StatusChanged,
			map[string]any{"stdout": "a b|$HOME|", "rc": 0}},
		{"stdin", modules.Args{"cmd": "cat", "stdin": "in"}, true, modules.StatusChanged,
			map[string]any{"stdout": "in", "rc": 0}},
		{"chdir", modules.Args{"cmd": "pwd", "chdir": dir}, true, modules.StatusChanged,
			map[string]any{"stdout": dir, "rc": 0}},
		{"nonzero rc fails", modules.Args{"cmd": "sh -c 'echo oops >&2; exit 3'"}, true, modules.StatusFailed,
			map[string]any{"stderr": "oops", "rc": 3}},
		{"creates exists", modules.Args{"cmd": "false", "creates": filepath.Join(dir, "pres*")}, false, "", nil},
		{"creates relative to chdir", modules.Args{"cmd": "false", "chdir": dir, "creates": "present"}, false, "", nil},
		{"creates missing", modules.Args{"cmd": "touch " + marker, "creates": marker}, true, modules.StatusChanged, map[string]any{"rc": 0}},
		{"removes missing", modules.Args{"cmd": "false", "removes": filepath.Join(dir, "nothing")}, false, "", nil},
		{"removes present", modules.Args{"cmd": "true", "removes": filepath.Join(dir, "present")}, true, modules.StatusChanged, map[string]any{"rc": 0}},
	}
	ctx := context.Background()
	env := &modules.Env{Host: "h1"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Module{}
			if err := m.Validate(tt.args); err != nil {
				t.Fatal(err)
			}
			c, err := m.Plan(ctx, env, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if c.Empty() == tt.wantChange {
				t.Fatalf("plan %v, want change=%v", c.Actions, tt.wantChange)
			}
			if !tt.wantChange {
				return
			}
			if c.Actions[0].Op != "!" || c.Actions[0].Target != "run" {
				t.Errorf("action %v", c.Actions[0])
			}
			res, err := m.Apply(ctx, env, c)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantStatus {
				t.Errorf("status %s (%s), want %s", res.Status, res.Msg, tt.wantStatus)
			}
			for k, v := range tt.wantData {
				if !reflect.DeepEqual(res.Data[k], v) {
					t.Errorf("Data[%s] = %#v, want %#v", k, res.Data[k], v)
				}
			}
		})
	}
}

func TestGuardIdempotent(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "done")
	args := modules.Args{"cmd": "touch " + marker, "creates": marker}
	ctx, env := context.Background(), &modules.Env{}
	c, err := Module{}.Plan(ctx, env, args)
	if err != nil || c.Empty() {
		t.Fatalf("first plan: %v %v", c, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("Plan ran the command")
	}
	if _, err := (Module{}).Apply(ctx, env, c); err != nil {
		t.Fatal(err)
	}
	if c, _ := (Module{}).Plan(ctx, env, args); !c.Empty() {
		t.Errorf("second plan not empty: %v", c.Actions)
	}
}

func TestMissingProgram(t *testing.T) {
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, modules.Args{"cmd": "/nonexistent/etcdplay-nope"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Module{}).Apply(context.Background(), &modules.Env{}, c); err == nil {
		t.Error("missing program did not fail")
	}
}

// Cancelling a command whose grandchild keeps stdout open returns at once
// and leaves no process of its group behind (it used to hang the agent).
func TestCancelKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, modules.Args{"argv": []any{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, _ = Module{}.Apply(ctx, &modules.Env{}, c)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Apply returned %s after the cancel", d)
	} else {
		t.Logf("Apply returned %s after it started (cancel at 300ms)", d.Round(time.Millisecond))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	// Gone, or a zombie waiting for its new parent to reap it.
	alive := func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err == nil && !strings.Contains(string(st), ") Z ")
	}
	deadline := time.Now().Add(2 * time.Second)
	for alive() {
		if time.Now().After(deadline) {
			t.Fatalf("the grandchild %d outlived the cancel", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A command's output is kept up to a cap; the rest is counted, and the
// command never sees a write fail.
func TestCappedOutput(t *testing.T) {
	for _, tt := range []struct {
		writes  []string
		kept    string
		dropped int64
	}{
		{[]string{"ab", "cd"}, "abcd", 0},
		{[]string{"abcdef"}, "abcd", 2},
		{[]string{"abc", "def", "gh"}, "abcd", 4},
	} {
		c := &capped{max: 4}
		for _, w := range tt.writes {
			if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if c.b.String() != tt.kept || c.dropped != tt.dropped {
			t.Errorf("%q: kept %q, dropped %d; want %q, %d", tt.writes, c.b.String(), c.dropped, tt.kept, tt.dropped)
		}
	}
}
