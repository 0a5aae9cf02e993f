package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/etcdplay/etcdplay/modules"
)

// ProtocolVersion is bumped on any incompatible change to Request or
// Response. The controller refuses an agent that speaks another version.
const ProtocolVersion = 2

// Version is the build version of the binary, reported in Facts. The CLI
// may set it (for example from -ldflags) before calling Main.
var Version = "dev"

// Ops understood by Serve.
const (
	OpHello    = "hello"
	OpRun      = "run"
	OpProbe    = "probe"
	OpCopy     = "copy"
	OpCancel   = "cancel"
	OpShutdown = "shutdown"
)

// Request is one controller-to-agent message.
type Request struct {
	ID      uint64 `json:"id"`
	Op      string `json:"op"`
	Version int    `json:"version,omitempty"`
	// Cancel is, for "cancel", the ID of the request to cancel.
	Cancel uint64 `json:"cancel,omitempty"`
	// Module names the module (run) or the probe (probe).
	Module   string       `json:"module,omitempty"`
	Args     modules.Args `json:"args,omitempty"`
	Check    bool         `json:"check,omitempty"`
	Host     string       `json:"host,omitempty"`
	Notified []string     `json:"notified,omitempty"`
	Copy     *CopySpec    `json:"copy,omitempty"`
}

// Response is one agent-to-controller message.
type Response struct {
	ID     uint64          `json:"id"`
	Result *modules.Result `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Facts  *Facts          `json:"facts,omitempty"`
	// Log is set on progress messages, which are never final.
	Log string `json:"log,omitempty"`
}

// CopySpec asks the agent to copy Src to Dst atomically (temp file in Dst's
// directory, fsync, rename). The controller uses it to move files between a
// directory the SSH user can write over SFTP and the place a become user
// (root) owns.
type CopySpec struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
	// Mode of Dst (permission bits).
	Mode uint32 `json:"mode"`
	// UID and GID own Dst; -1 keeps the owner of an existing Dst, or the
	// agent's own for a new file.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// RemoveSrc deletes Src once Dst is in place.
	RemoveSrc bool `json:"remove_src,omitempty"`
}

// Facts describe the host and the agent, gathered at hello.
type Facts struct {
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Hostname string `json:"hostname"`
	// UID is the user the agent runs as (0 under become to root).
	UID        int    `json:"uid"`
	Version    string `json:"version"`
	Protocol   int    `json:"protocol"`
	Executable string `json:"executable"`
	// SHA256 of the agent binary; filled in by the controller, which
	// named the uploaded file after it.
	SHA256 string `json:"sha256,omitempty"`
}

// Normalize turns the json.Number values a UseNumber decoder produced
// into int (when integral) or float64, recursively, so Args decoded on the
// agent look like the Args the compiler decoded from YAML.
func Normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		if n, err := t.Int64(); err == nil && n >= math.MinInt && n <= math.MaxInt {
			return int(n)
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = Normalize(e)
		}
		return t
	case modules.Args:
		for k, e := range t {
			t[k] = Normalize(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = Normalize(e)
		}
		return t
	}
	return v
}

// NormalizeResult applies Normalize to a decoded Result's Data.
func NormalizeResult(r *modules.Result) {
	if r != nil && r.Data != nil {
		Normalize(r.Data)
	}
}

// ErrTooLarge is returned by a Decoder reading a message over
// modules.MaxMessage.
var ErrTooLarge = fmt.Errorf("a message over %d MiB: refused rather than buffered", modules.MaxMessage>>20)

// Decoder reads the protocol's JSON messages, each bounded by
// modules.MaxMessage (with what the decoder had read ahead of it, at most
// twice that is ever buffered).
type Decoder struct {
	dec *json.Decoder
	lim *messageLimit
}

// NewDecoder reads messages from r.
func NewDecoder(r io.Reader) *Decoder {
	lim := &messageLimit{r: r}
	dec := json.NewDecoder(lim)
	dec.UseNumber()
	return &Decoder{dec: dec, lim: lim}
}

// Decode reads the next message into v.
func (d *Decoder) Decode(v any) error {
	d.lim.left = modules.MaxMessage
	err := d.dec.Decode(v)
	if errors.Is(err, ErrTooLarge) {
		return ErrTooLarge
	}
	return err
}

// messageLimit ends a read with ErrTooLarge once left bytes are used.
type messageLimit struct {
	r    io.Reader
	left int64
}

func (l *messageLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
