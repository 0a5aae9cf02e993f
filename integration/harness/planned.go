package harness

import (
	"strings"

	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/modules"
)

// Planned gathers the actions and file diffs every task reported for host
// (what --check says it would do, or what apply did), in event order.
func (o *Outcome) Planned(host string) (actions []modules.Action, diffs []modules.FileDiff) {
	for _, ev := range o.Events {
		if ev.Type != runner.EventNodeDone || ev.Host != host || ev.Change == nil {
			continue
		}
		actions = append(actions, ev.Change.Actions...)
		diffs = append(diffs, ev.Change.Diffs...)
	}
	return actions, diffs
}

// PlanText is host's planned actions (Planned), one line each.
func (o *Outcome) PlanText(host string) string {
	acts, _ := o.Planned(host)
	lines := make([]string, len(acts))
	for i, a := range acts {
		lines[i] = a.String()
	}
	return strings.Join(lines, "\n")
}
