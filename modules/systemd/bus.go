package systemd

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// privateSocket is systemd's own D-Bus socket: root only, and there
// whether or not a dbus daemon runs, which is what systemctl itself talks
// to as root.
const privateSocket = "/run/systemd/private"

const busTimeout = 25 * time.Second

// The agent asks systemd for a unit's state over privateSocket, on one
// connection per agent process. `systemctl show` is the same question
// plus a program start: about 20 ms of a busy host's CPU, three times per
// host in a converged site.yml run, and more than the rest of those
// tasks' work together.
var bus struct {
	mu   sync.Mutex
	conn *dbus.Conn
	// off: the socket cannot be used here (not root, no systemd), so
	// every Show runs systemctl.
	off bool
}

// showBus reads unit's state over privateSocket. ok is false when the
// socket cannot be used or the query failed: the caller then runs
// systemctl, whose error, if it fails too, is the one an operator knows.
func showBus(ctx context.Context, unit string) (st UnitState, ok bool) {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.off {
		return st, false
	}
	if bus.conn == nil {
		if os.Geteuid() != 0 {
			bus.off = true
			return st, false
		}
		c, err := dialBus(ctx)
		if err != nil {
			bus.off = true
			return st, false
		}
		bus.conn = c
	}
	// systemctl's own limit for a method call: a PID 1 that does not
	// answer is an error, not a hung agent.
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	st, err := unitState(ctx, bus.conn, unitName(unit))
	if err != nil {
		// A closed connection (systemd re-executed) is dialled again on
		// the next Show.
		bus.conn.Close()
		bus.conn = nil
		return st, false
	}
	return st, true
}

// dialBus connects to privateSocket. The connection outlives ctx (it
// serves every later Show of this agent), so ctx only bounds the wait.
func dialBus(ctx context.Context) (*dbus.Conn, error) {
	type result struct {
		c   *dbus.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := dbus.Dial("unix:path=" + privateSocket)
		if err == nil {
			// systemd's socket takes EXTERNAL authentication and no
			// Hello (there is no bus daemon to greet).
			if err = c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
				c.Close()
			}
		}
		done <- result{c, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// unitState reads the properties showProps names. Asking for a unit
// object's properties loads the unit, as `systemctl show` does, so a
// unit with no file reads as LoadState "not-found".
func unitState(ctx context.Context, c *dbus.Conn, unit string) (UnitState, error) {
	obj := c.Object("org.freedesktop.systemd1", dbus.ObjectPath("/org/freedesktop/systemd1/unit/"+sdbus.PathBusEscape(unit)))
	var props map[string]dbus.Variant
	if err := obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, "org.freedesktop.systemd1.Unit").Store(&props); err != nil {
		return UnitState{}, err
	}
	str := func(k string) string { s, _ := props[k].Value().(string); return s }
	need, _ := props["NeedDaemonReload"].Value().(bool)
	st := UnitState{ID: str("Id"), LoadState: str("LoadState"), ActiveState: str("ActiveState"),
		SubState: str("SubState"), UnitFileState: str("UnitFileState"), NeedDaemonReload: need}
	if strings.HasSuffix(st.ID, ".service") {
		var v dbus.Variant
		if err := obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Service", "ExecMainStartTimestamp").Store(&v); err != nil {
			return UnitState{}, err
		}
		if us, _ := v.Value().(uint64); us != 0 {
			st.MainStarted = time.UnixMicro(int64(us)).UTC()
		}
	}
	return st, nil
}

// unitSuffixes are systemd's unit types; a name without one is a service,
// as systemctl takes it.
var unitSuffixes = []string{".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer", ".slice", ".scope"}

func unitName(name string) string {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			return name
		}
	}
	return name + ".service"
}
