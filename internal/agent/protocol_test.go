package agent

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/modules"
)

// Messages up to modules.MaxMessage are read one after another; a larger
// one is refused once the limit is reached, without buffering the rest.
func TestDecoderBoundsEachMessage(t *testing.T) {
	small := `{"id":1,"op":"hello"}` + "\n"
	big := `{"id":2,"op":"run","module":"` + strings.Repeat("x", modules.MaxMessage-100) + `"}` + "\n"
	d := NewDecoder(io.MultiReader(strings.NewReader(small), strings.NewReader(big), strings.NewReader(small)))
	for i, want := range []uint64{1, 2, 1} {
		var r Request
		if err := d.Decode(&r); err != nil || r.ID != want {
			t.Fatalf("message %d: id %d, %v; want id %d", i+1, r.ID, err, want)
		}
	}

	huge := io.MultiReader(strings.NewReader(`{"id":3,"op":"run","module":"`), endless{})
	var r Request
	if err := NewDecoder(huge).Decode(&r); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a message without end: %v, want ErrTooLarge", err)
	}
}

// endless is a reader of 'x' that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}
