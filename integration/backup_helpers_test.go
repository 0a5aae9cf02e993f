package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"gopkg.in/yaml.v3"
)

// taskEvent returns the first finished node of module.
func taskEvent(o *harness.Outcome, module string) (runner.Event, bool) {
	for _, ev := range o.Events {
		if ev.Type == runner.EventNodeDone && ev.Module == module {
			return ev, true
		}
	}
	return runner.Event{}, false
}

// putKeys writes n keys key/%06d = value-%06d-<tag> (plus padding) with
// a few writers at once.
func putKeys(t testing.TB, cli *clientv3.Client, n int, tag string, pad int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	padding := strings.Repeat("x", pad)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if _, err := cli.Put(ctx, fmt.Sprintf("key/%06d", i), fmt.Sprintf("value-%06d-%s%s", i, tag, padding)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("put: %v", err)
	}
}

// checkKeys reads every key back and checks n keys with their tag's value.
func checkKeys(t testing.TB, cli *clientv3.Client, n int, tag string, pad int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, "key/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != n {
		t.Fatalf("%d keys under key/, want %d", len(resp.Kvs), n)
	}
	padding := strings.Repeat("x", pad)
	bad := 0
	for i, kv := range resp.Kvs {
		wantK, wantV := fmt.Sprintf("key/%06d", i), fmt.Sprintf("value-%06d-%s%s", i, tag, padding)
		if string(kv.Key) != wantK || string(kv.Value) != wantV {
			if bad < 5 {
				t.Errorf("key %d: %q = %.40q, want %q = %.40q", i, kv.Key, kv.Value, wantK, wantV)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys wrong", bad, n)
	}
}

// clusterState is what a restore must change or keep: the cluster id and
// each member's etcd process start time.
type clusterState struct {
	ClusterID uint64
	Members   int
	Healthy   int
}

func readCluster(t testing.TB, e *harness.Env) clusterState {
	t.Helper()
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	st := clusterState{ClusterID: ml.Header.ClusterId, Members: len(ml.Members)}
	for _, ep := range e.Endpoints() {
		if s, err := cli.Status(ctx, ep); err == nil && s.Leader != 0 && s.Header.ClusterId == st.ClusterID {
			st.Healthy++
		}
	}
	return st
}

// hostGlob lists paths matching pattern in host's root, as seen on the host.
func hostGlob(t testing.TB, e *harness.Env, host, pattern string) []string {
	t.Helper()
	root, err := e.Lab.HostRoot(host)
	if err != nil {
		t.Fatal(err)
	}
	m, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = strings.TrimPrefix(m[i], root)
	}
	return m
}

func backups(t testing.TB, e *harness.Env) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(e.StateDir, "backups", harness.ClusterName, "*.db"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func clientv3WithPrefixCount() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}

// inventoryWithHostVars copies the YAML inventory at path with vars added
// to one host of group etcd.
func inventoryWithHostVars(t testing.TB, path, host string, vars map[string]any) string {
	t.Helper()
	return editInventory(t, path, func(inv map[string]any) {
		maps.Copy(etcdHostVars(t, inv, host), vars)
	})
}

// etcdHostVars is the variables map of host in the etcd group of a YAML
// inventory read by editInventory (changes to it are written out).
func etcdHostVars(t testing.TB, inv map[string]any, host string) map[string]any {
	t.Helper()
	all, _ := inv["all"].(map[string]any)
	children, _ := all["children"].(map[string]any)
	etcd, _ := children["etcd"].(map[string]any)
	hosts, _ := etcd["hosts"].(map[string]any)
	h, ok := hosts[host].(map[string]any)
	if !ok {
		t.Fatalf("inventory has no host %s in group etcd", host)
	}
	return h
}

// inventoryWithVars copies the YAML inventory at path with vars added to
// all.vars.
func inventoryWithVars(t testing.TB, path string, vars map[string]any) string {
	t.Helper()
	return editInventory(t, path, func(inv map[string]any) {
		all, _ := inv["all"].(map[string]any)
		if all == nil {
			t.Fatalf("inventory %s has no all:", path)
		}
		av, _ := all["vars"].(map[string]any)
		if av == nil {
			av = map[string]any{}
			all["vars"] = av
		}
		maps.Copy(av, vars)
	})
}

// editInventory copies the YAML inventory at path, changed by edit, into
// a new file and returns its path.
func editInventory(t testing.TB, path string, edit func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	edit(inv)
	out, err := yaml.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func snapdbInspect(path string) (*snapdb.Info, error) {
	return snapdb.Inspect(path, snapdb.Options{})
}
