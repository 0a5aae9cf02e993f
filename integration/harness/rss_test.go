package harness

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// allocateEnv makes the test binary, run as a child, hold that many MB.
const allocateEnv = "HARNESS_ALLOCATE_MB"

func TestMain(m *testing.M) {
	if mb, err := strconv.Atoi(os.Getenv(allocateEnv)); err == nil {
		os.Exit(hold(mb))
	}
	os.Exit(m.Run())
}

// hold touches mb MB and exits 0.
func hold(mb int) int {
	b := make([]byte, mb<<20)
	for i := range b {
		if i%4096 == 0 {
			b[i] = 1
		}
	}
	runtime.KeepAlive(b)
	return 0
}

// A run's MaxRSS is its own peak, however large the process that started
// it (the benchmarks' test binary can hold hundreds of MB, which wait4's
// ru_maxrss counts in).
func TestMaxRSSIsTheRunsOwn(t *testing.T) {
	big := make([]byte, 300<<20)
	for i := range big {
		if i%4096 == 0 {
			big[i] = 1
		}
	}
	o := run(t, os.Args[0], nil, append(os.Environ(), fmt.Sprintf("%s=%d", allocateEnv, 40)))
	runtime.KeepAlive(big)
	if o.Code != 0 || o.MaxRSS < 40<<20 || o.MaxRSS > 150<<20 {
		t.Fatalf("a run holding 40 MB: exit %d, MaxRSS %d MB (this process holds 300 MB)", o.Code, o.MaxRSS>>20)
	}
}
