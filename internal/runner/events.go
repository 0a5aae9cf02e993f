package runner

import (
	"time"

	"github.com/etcdplay/etcdplay/internal/transport"

	"github.com/etcdplay/etcdplay/modules"
)

// EventType names what happened. The text and JSON printers render the same
// events, so a pipeline sees exactly what a person sees.
type EventType string

const (
	EventPlayStart   EventType = "play_start"
	EventHostConnect EventType = "host_connected"
	EventNodeDone    EventType = "task_result"
	EventLog         EventType = "log"
	EventRecap       EventType = "recap"
	// EventProgress is a large transfer to a host under way: Transfer says
	// how far. The text output shows it on a terminal only.
	EventProgress EventType = "progress"
)

// Event is one thing worth reporting during a run.
type Event struct {
	Time   time.Time       `json:"time"`
	Type   EventType       `json:"type"`
	Play   string          `json:"play,omitempty"`
	Task   string          `json:"task,omitempty"`
	Module string          `json:"module,omitempty"`
	Host   string          `json:"host,omitempty"`
	Node   string          `json:"node,omitempty"`
	Status modules.Status  `json:"status,omitempty"`
	Msg    string          `json:"msg,omitempty"`
	Change *modules.Change `json:"change,omitempty"`
	// Data is the module's result data (a command's stdout, stderr and
	// rc; a snapshot's path and revision; what register stores).
	Data    map[string]any `json:"data,omitempty"`
	Elapsed float64        `json:"elapsed_seconds,omitempty"`
	Recap   []HostRecap    `json:"recap,omitempty"`
	// Timeline (EventRecap) is where the run's time went.
	Timeline []Span `json:"timeline,omitempty"`
	// Transfer is how far a transfer has come (EventProgress).
	Transfer *transport.Transfer `json:"transfer,omitempty"`
}

// HostRecap counts a host's task outcomes, as in Ansible's PLAY RECAP.
type HostRecap struct {
	Host        string  `json:"host"`
	OK          int     `json:"ok"`
	Changed     int     `json:"changed"`
	Unreachable int     `json:"unreachable"`
	Failed      int     `json:"failed"`
	Skipped     int     `json:"skipped"`
	Elapsed     float64 `json:"elapsed_seconds"`
}

// Sink receives events. Implementations must be safe for concurrent use.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }
