package etcd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

// ArgDuration reads a timeout argument: a Go duration ("90s", "2m") or a
// bare number of seconds.
func ArgDuration(args modules.Args, name string, def time.Duration) (time.Duration, error) {
	v, ok := args[name]
	if !ok || v == nil {
		return def, nil
	}
	s := strings.TrimSpace(fmt.Sprint(v))
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, &modules.ArgError{Arg: name, Msg: fmt.Sprintf("must be positive, got %d", n)}
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, &modules.ArgError{Arg: name, Msg: fmt.Sprintf("%q is not a duration (e.g. 60s, 2m, or seconds)", s)}
	}
	return d, nil
}
