package etcd

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize reads a byte size: a plain number of bytes, or a number with a
// unit. K, M, G, T and their Ki/KiB forms are binary (what operators mean
// by "8G" for quota-backend-bytes); KB, MB, GB, TB are decimal.
func ParseSize(v any) (int64, error) {
	switch t := v.(type) {
	case int:
		if t < 0 {
			return 0, fmt.Errorf("size %d is negative", t)
		}
		return int64(t), nil
	case int64:
		if t < 0 {
			return 0, fmt.Errorf("size %d is negative", t)
		}
		return t, nil
	case float64:
		if t < 0 || t != math.Trunc(t) {
			return 0, fmt.Errorf("size %v is not a whole number of bytes", t)
		}
		return int64(t), nil
	case string:
		return parseSizeString(t)
	}
	return 0, fmt.Errorf("size must be a number or a string like 8G, got %T", v)
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so "GiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

func parseSizeString(s string) (int64, error) {
	in := strings.TrimSpace(s)
	num, mult := in, 1.0
	for _, u := range sizeUnits {
		if len(in) > len(u.suffix) && strings.EqualFold(in[len(in)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(in[:len(in)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit: 8G, 8GiB, 1.5MiB, 500MB)", s)
	}
	b := f * mult
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}
