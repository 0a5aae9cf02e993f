package output

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/modules"
)

const key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBL...\n-----END EC PRIVATE KEY-----\n"

func events() []runner.Event {
	conf := &modules.Change{
		Actions: []modules.Action{{Op: "~", Target: "/etc/etcd/etcd.yaml", Detail: "content"}},
		Diffs:   []modules.FileDiff{{Path: "/etc/etcd/etcd.yaml", Before: "a: 1\nb: 2\n", After: "a: 1\nb: 3\n"}},
	}
	secret := &modules.Change{
		Actions: []modules.Action{{Op: "+", Target: "/etc/etcd/pki/server.key"}},
		Diffs:   []modules.FileDiff{{Path: "/etc/etcd/pki/server.key", After: key, Secret: true}},
	}
	return []runner.Event{
		{Type: runner.EventHostConnect, Host: "etcd1", Status: modules.StatusOK, Msg: "ssh admin@127.0.1.1:22, become root (sudo -n), agent session up in 41ms"},
		{Type: runner.EventHostConnect, Host: "etcd3", Status: modules.StatusUnreachable, Msg: "dial tcp 127.0.1.3:22: connection refused"},
		{Type: runner.EventNodeDone, Play: "etcd cluster", Task: "uptime", Module: "command", Host: "etcd1", Status: modules.StatusOK,
			Data: map[string]any{"rc": 0, "stdout": "up 3 days\nload 0.1\n", "stderr": "", "cmd": []any{"uptime"}}},
		{Type: runner.EventNodeDone, Play: "etcd cluster", Task: "etcd.yaml", Host: "etcd1", Status: modules.StatusChanged, Change: conf},
		{Type: runner.EventNodeDone, Play: "etcd cluster", Task: "TLS certificates", Host: "etcd1", Status: modules.StatusChanged, Change: secret},
		{Type: runner.EventNodeDone, Play: "etcd cluster", Task: "health", Host: "etcd2", Status: modules.StatusFailed, Msg: "etcd2 unhealthy"},
		{Type: runner.EventNodeDone, Play: "etcd cluster", Task: "restart", Host: "etcd2", Status: modules.StatusSkipped, Msg: `not run: "health" failed on etcd2`},
		{Type: runner.EventRecap, Elapsed: 1.5, Recap: []runner.HostRecap{
			{Host: "etcd1", OK: 2, Changed: 2, Elapsed: 1.2},
			{Host: "etcd2", Failed: 1, Skipped: 1, Elapsed: 1.3},
			{Host: "etcd3", Unreachable: 1, Elapsed: 0.1},
		}, Timeline: []runner.Span{
			{What: "connect", Start: 0, End: 0.41, Hosts: 2},
			{Play: "etcd cluster", What: "uptime", Start: 0.41, End: 0.415, Hosts: 1},
			{Play: "etcd cluster", What: "etcd.yaml", Start: 0.42, End: 0.6, Hosts: 1},
			{Play: "etcd cluster", What: "health", Start: 0.43, End: 1.4, Hosts: 1},
			{Play: "etcd cluster", What: "TLS certificates", Start: 0.6, End: 1.1, Hosts: 1},
		}},
	}
}

func TestTextGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"apply", Options{}},
		{"check-diff", Options{Diff: true, Check: true}},
		// -v shows result data; -vvv connections too.
		{"apply-v", Options{Verbosity: 1}},
		{"apply-vvv", Options{Verbosity: 3}},
		{"apply-color", Options{Color: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			sink, err := New("text", &buf, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events() {
				sink.Emit(e)
			}
			if strings.Contains(buf.String(), "PRIVATE KEY") {
				t.Errorf("secret content printed:\n%s", buf.String())
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), buf.String())
		})
	}
}

func TestJSONMasksSecrets(t *testing.T) {
	var buf bytes.Buffer
	sink, _ := New("json", &buf, Options{Diff: true})
	for _, e := range events() {
		sink.Emit(e)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(events()) {
		t.Fatalf("%d lines for %d events", len(lines), len(events()))
	}
	for _, l := range lines {
		var e runner.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not one JSON event per line: %v\n%s", err, l)
		}
	}
	if strings.Contains(buf.String(), "PRIVATE KEY") || !strings.Contains(buf.String(), "sha256:") {
		t.Errorf("secret not masked by a hash:\n%s", buf.String())
	}
	// Result data is always in the events, without -v.
	if !strings.Contains(buf.String(), `"data":{"cmd":["uptime"],"rc":0,"stderr":"","stdout":"up 3 days\nload 0.1\n"}`) {
		t.Errorf("result data missing from the JSON events:\n%s", buf.String())
	}
	if _, err := New("xml", &buf, Options{}); err == nil {
		t.Error("unknown format accepted")
	}

	// Without --diff, no file content at all, as in the text output.
	buf.Reset()
	sink, _ = New("json", &buf, Options{})
	for _, e := range events() {
		sink.Emit(e)
	}
	if strings.Contains(buf.String(), `"diffs"`) || strings.Contains(buf.String(), "b: 3") {
		t.Errorf("diffs in JSON without --diff:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "/etc/etcd/etcd.yaml") {
		t.Errorf("the actions are gone too:\n%s", buf.String())
	}
}

func TestTextProgress(t *testing.T) {
	const mb = 1_000_000
	prog := func(host, what string, done, total int64) runner.Event {
		return runner.Event{Type: runner.EventProgress, Host: host, Transfer: &transport.Transfer{What: what, Done: done, Total: total}}
	}
	events := []runner.Event{
		prog("etcd1", "agent", 2*mb, 12*mb),
		prog("etcd2", "agent", 4*mb, 12*mb),
		{Type: runner.EventNodeDone, Play: "p", Task: "t", Host: "etcd1", Status: modules.StatusOK},
		prog("etcd2", "agent", 12*mb, 12*mb),
	}
	tests := []struct {
		name     string
		progress bool
		want     string
	}{
		{"terminal", true, "sending agent to 1 host: 2.0 of 12.0 MB (16%)" +
			"\r\x1b[Ksending agent to 2 hosts: 6.0 of 24.0 MB (25%)" +
			"\r\x1b[K\nPLAY [p] " + stars("p") + "\nok: [etcd1] t\n" +
			"sending agent to 1 host: 4.0 of 12.0 MB (33%)" +
			"\r\x1b[K"},
		{"pipe", false, "\nPLAY [p] " + stars("p") + "\nok: [etcd1] t\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			sink, err := New("text", &b, Options{Progress: tt.progress})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events {
				sink.Emit(e)
			}
			if b.String() != tt.want {
				t.Errorf("got  %q\nwant %q", b.String(), tt.want)
			}
		})
	}
	var j bytes.Buffer
	js, _ := New("json", &j, Options{})
	js.Emit(events[0])
	if j.Len() != 0 {
		t.Errorf("JSON printed a progress event: %s", j.String())
	}
}
