package store

import (
	"testing"
	"time"
)

// month is one verified backup every hour for 31 days of January 2026,
// newest last.
func month() []Entry {
	start := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)
	var es []Entry
	for i := 0; i < 31*24; i++ {
		m := Meta{Member: "etcd1", Revision: int64(100 + i), Time: start.Add(time.Duration(i) * time.Hour), Verified: true, Origin: "controller"}
		es = append(es, Entry{Name: m.SnapshotName(), Meta: m, HasMeta: true})
	}
	return es
}

func TestPolicySelect(t *testing.T) {
	es := month()
	newest := es[len(es)-1].Time()
	tests := []struct {
		name string
		p    Policy
		want int
		// check says what must hold of the kept set.
		check func(t *testing.T, keep []Entry)
	}{
		{"empty keeps all", Policy{}, len(es), nil},
		{"last 7", Policy{Last: 7}, 7, func(t *testing.T, keep []Entry) {
			if !keep[0].Time().Equal(newest) {
				t.Errorf("newest first: got %v", keep[0].Time())
			}
		}},
		{"hourly 24", Policy{Hourly: 24}, 24, nil},
		{"daily 7", Policy{Daily: 7}, 7, func(t *testing.T, keep []Entry) {
			for i, e := range keep {
				// The newest backup of each day: 23:30, and today's is the
				// newest of all.
				if want := newest.AddDate(0, 0, -i); !e.Time().Equal(want) {
					t.Errorf("daily %d: got %v, want %v", i, e.Time(), want)
				}
			}
		}},
		// January 2026: ISO weeks 1 (from Thu 1st) to 5 (ends Sat 31st).
		{"weekly 4", Policy{Weekly: 4}, 4, nil},
		{"weekly 10 has only 5 weeks", Policy{Weekly: 10}, 5, nil},
		{"monthly 12 has one month", Policy{Monthly: 12}, 1, nil},
		// Overlaps count once: 24 hourly (the 31st); 6 more daily (25th to
		// 30th); weekly adds the 18th and 11th (week 5's newest is the
		// 31st, week 4's the 25th, both kept already); monthly adds none.
		{"gfs", Policy{Hourly: 24, Daily: 7, Weekly: 4, Monthly: 3}, 24 + 6 + 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, drop := tt.p.Select(es)
			if len(keep) != tt.want {
				t.Fatalf("kept %d, want %d (%s)", len(keep), tt.want, tt.p)
			}
			if len(keep)+len(drop) != len(es) {
				t.Fatalf("kept %d + dropped %d != %d", len(keep), len(drop), len(es))
			}
			if tt.check != nil {
				tt.check(t, keep)
			}
		})
	}
}

// Retention never drops the last verified backup, even when the newer
// ones it keeps were not verified.
func TestPolicyKeepsLastVerified(t *testing.T) {
	es := month()[:10]
	for i := 5; i < 10; i++ {
		es[i].Meta.Verified = false
	}
	keep, _ := Policy{Last: 2}.Select(es)
	if len(keep) != 3 || keep[2].Name != es[4].Name {
		t.Fatalf("kept %v, want the 2 newest and %s", names(keep), es[4].Name)
	}
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		enc  bool
	}{
		{"20260101T003000Z-etcd1-rev100.db", true, false},
		{"20260101T003000Z-etcd-a.b_c-rev1.db.age", true, true},
		{"20260101T003000Z-etcd1-rev100.json", false, false},
		{"snapshot-20260101T003000Z.db", false, false},
		{".partial-20260101T003000Z-etcd1-rev100.db", false, false},
		{"20261301T003000Z-etcd1-rev100.db", false, false},
	}
	for _, tt := range tests {
		p, ok := parseName(tt.name)
		if ok != tt.ok || p.Encrypted != tt.enc {
			t.Errorf("%s: ok %v enc %v, want %v %v", tt.name, ok, p.Encrypted, tt.ok, tt.enc)
		}
	}
}
