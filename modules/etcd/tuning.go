package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// AutoTuning is what etcd_tune derived from the measured peer round trips
// when etcd_heartbeat_interval is "auto". It lives in the controller state
// directory so that etcd_config (run after etcd_tune, on the controller)
// can render those values, and so the next apply keeps them unless the
// network really changed.
type AutoTuning struct {
	HeartbeatInterval int       `json:"heartbeat_interval"` // ms
	ElectionTimeout   int       `json:"election_timeout"`   // ms
	MaxRTT            string    `json:"max_rtt"`            // the measurement behind them
	MeasuredAt        time.Time `json:"measured_at"`
}

// TuningFile is where etcd_tune records AutoTuning for this cluster.
func (c *Cluster) TuningFile(stateDir string) string {
	return filepath.Join(stateDir, c.Name, "tuning.json")
}

// LoadAutoTuning reads the recorded tuning; nil, nil when there is none
// yet (etcd_tune has not run for this cluster).
func LoadAutoTuning(path string) (*AutoTuning, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var t AutoTuning
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if t.HeartbeatInterval <= 0 || t.ElectionTimeout < 5*t.HeartbeatInterval {
		return nil, fmt.Errorf("%s: heartbeat %dms / election %dms are not usable; delete the file and rerun etcd_tune", path, t.HeartbeatInterval, t.ElectionTimeout)
	}
	return &t, nil
}

// SaveAutoTuning writes t atomically.
func SaveAutoTuning(path string, t *AutoTuning) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return hostfile.WriteAtomic(path, append(b, '\n'), 0o600, -1, -1)
}

// EffectiveTiming is the heartbeat and election timeout etcd.yaml should
// carry: the configured ones, or with etcd_heartbeat_interval "auto" the
// ones etcd_tune recorded (etcd's defaults until it has run).
func (c *Cluster) EffectiveTiming(stateDir string) (heartbeat, election int, err error) {
	if !c.HeartbeatAuto {
		return c.HeartbeatInterval, c.ElectionTimeout, nil
	}
	t, err := LoadAutoTuning(c.TuningFile(stateDir))
	if err != nil || t == nil {
		return c.HeartbeatInterval, c.ElectionTimeout, err
	}
	return t.HeartbeatInterval, t.ElectionTimeout, nil
}
