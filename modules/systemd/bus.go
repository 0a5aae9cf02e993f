package systemd

import (
	"context"
	"errors"
	"fmt"
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

// The agent talks to systemd over privateSocket, on one connection per
// agent process, for reading units (Show) and acting on them (Run).
// `systemctl show` is the same question plus a program start: about 20
// ms of a busy host's CPU, three times per host in a converged site.yml
// run, and more than the rest of those tasks' work together; a cold run's
// daemon-reload, enable and start are three more.
var bus struct {
	mu   sync.Mutex
	conn *dbus.Conn
	// off: the socket cannot be used here (not root, no systemd), so
	// every Show and Run uses systemctl.
	off bool
}

// busConn is the agent's connection to systemd, dialled on first use, or
// nil when the socket cannot be used.
func busConn(ctx context.Context) *dbus.Conn {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.off {
		return nil
	}
	if bus.conn == nil {
		if os.Geteuid() != 0 {
			bus.off = true
			return nil
		}
		c, err := dialBus(ctx)
		if err != nil {
			bus.off = true
			return nil
		}
		bus.conn = c
	}
	return bus.conn
}

// dropBus closes c after a failed call, unless it was replaced already:
// a closed connection (systemd re-executed) is dialled again on next use.
func dropBus(c *dbus.Conn) {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.conn == c {
		bus.conn.Close()
		bus.conn = nil
	}
}

// showBus reads unit's state over privateSocket. ok is false when the
// socket cannot be used or the query failed: the caller then runs
// systemctl, whose error, if it fails too, is the one an operator knows.
func showBus(ctx context.Context, unit string) (st UnitState, ok bool) {
	c := busConn(ctx)
	if c == nil {
		return st, false
	}
	// systemctl's own limit for a method call: a PID 1 that does not
	// answer is an error, not a hung agent.
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	st, err := unitState(ctx, c, unitName(unit))
	if err != nil {
		dropBus(c)
		return st, false
	}
	return st, true
}

const manager = "org.freedesktop.systemd1.Manager"

// runBus carries out verb on unit over privateSocket, as runSystemctl
// would. ok is false when the socket could not be used (the caller then
// runs systemctl); a refusal by systemd, or a job that failed, is an
// error with ok true.
func runBus(ctx context.Context, verb, unit string, noBlock bool) (ok bool, err error) {
	c := busConn(ctx)
	if c == nil {
		return false, nil
	}
	if unit != "" {
		unit = unitName(unit) // systemctl's default type; the bus has none
	}
	obj := c.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	call := func(timeout time.Duration, method string, args ...any) *dbus.Call {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return obj.CallWithContext(cctx, manager+"."+method, 0, args...)
	}
	var res *dbus.Call
	switch verb {
	case "daemon-reload":
		// systemd answers once the reload is done, which on a host
		// with many units can take well over the 25 s of other calls:
		// wait minutes rather than give up and reload again with
		// systemctl.
		res = call(6*time.Minute, "Reload")
	case "enable":
		// As systemctl enable --no-reload: the links, no reload.
		res = call(busTimeout, "EnableUnitFiles", []string{unit}, false, false)
	case "disable":
		res = call(busTimeout, "DisableUnitFiles", []string{unit}, false)
	case "start", "stop", "restart", "reload":
		return runJob(ctx, c, obj, verb, unit, noBlock)
	default:
		return false, nil // mask and unmask: systemctl
	}
	if res.Err != nil {
		return busError(c, verb, unit, res.Err)
	}
	return true, nil
}

// jobMethods are the Manager methods that queue each verb's job.
var jobMethods = map[string]string{"start": "StartUnit", "stop": "StopUnit", "restart": "RestartUnit", "reload": "ReloadUnit"}

// runJob queues verb's job for unit and, unless noBlock, waits for
// systemd's JobRemoved signal for it, as systemctl does: systemd sends
// its signals to every connection on its private socket, so the channel
// is listening before the job is queued and none is missed. ok is false
// as for runBus.
func runJob(ctx context.Context, c *dbus.Conn, obj dbus.BusObject, verb, unit string, noBlock bool) (ok bool, err error) {
	signals := make(chan *dbus.Signal, 64)
	if !noBlock {
		c.Signal(signals)
		defer c.RemoveSignal(signals)
	}
	cctx, cancel := context.WithTimeout(ctx, busTimeout)
	var job dbus.ObjectPath
	cerr := obj.CallWithContext(cctx, manager+"."+jobMethods[verb], 0, unit, "replace").Store(&job)
	cancel()
	if cerr != nil {
		return busError(c, verb, unit, cerr)
	}
	if noBlock {
		return true, nil
	}
	for {
		select {
		case <-ctx.Done():
			return true, fmt.Errorf("systemd %s %s: waiting for its job: %w", verb, unit, context.Cause(ctx))
		case sig := <-signals:
			if sig == nil {
				return true, fmt.Errorf("systemd %s %s: the connection to systemd closed while its job ran", verb, unit)
			}
			if sig.Name != manager+".JobRemoved" || len(sig.Body) != 4 {
				continue
			}
			if p, _ := sig.Body[1].(dbus.ObjectPath); p != job {
				continue
			}
			switch result, _ := sig.Body[3].(string); result {
			case "done", "skipped": // success, for systemctl too
				return true, nil
			default:
				return true, fmt.Errorf("systemd %s %s: the job ended %q; see \"systemctl status %s\" and \"journalctl -xeu %s\"", verb, unit, result, unit, unit)
			}
		}
	}
}

// busError is err from a method call: systemd's refusal (a D-Bus error
// reply, such as an unknown unit) in its own words, with ok true; or a
// failed connection, with ok false: dropped, so the next call dials
// again, and this one falls back to systemctl.
func busError(c *dbus.Conn, verb, unit string, err error) (bool, error) {
	var de dbus.Error
	if errors.As(err, &de) {
		msg := de.Name
		if len(de.Body) > 0 {
			if s, ok := de.Body[0].(string); ok {
				msg = s
			}
		}
		return true, fmt.Errorf("systemd %s %s: %s", verb, unit, msg)
	}
	dropBus(c)
	return false, nil
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
