package etcdstatus

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report the way etcdctl's -w table would: endpoint
// status with health, then the member list, then alarms and a verdict.
func WriteTable(w io.Writer, r *Report) error {
	var b strings.Builder
	st := table{header: []string{"ENDPOINT", "NAME", "ID", "VERSION", "DB SIZE", "IN USE", "FRAGMENTED", "IS LEADER", "IS LEARNER",
		"RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "HEALTH", "TOOK", "ERRORS"}}
	for _, e := range r.Endpoints {
		health := "healthy"
		if !e.Healthy {
			health = "unhealthy"
		}
		errs := append([]string(nil), e.Errors...)
		if e.Error != "" {
			errs = append([]string{e.Error}, errs...)
		}
		if e.ID == "" { // the member did not answer: no status to show
			st.rows = append(st.rows, []string{e.Endpoint, e.Name, "", "", "", "", "", "", "", "", "", "", health, e.Took, strings.Join(errs, ", ")})
			continue
		}
		st.rows = append(st.rows, []string{e.Endpoint, e.Name, e.ID, e.Version, Bytes(e.DBSize), Bytes(e.DBSizeInUse), fmt.Sprintf("%d%%", e.Fragmented),
			strconv.FormatBool(e.IsLeader), strconv.FormatBool(e.IsLearner), u(e.RaftTerm), u(e.RaftIndex),
			u(e.RaftAppliedIndex), health, e.Took, strings.Join(errs, ", ")})
	}
	st.write(&b)

	b.WriteString("\n")
	if len(r.Members) == 0 {
		b.WriteString("member list: not available\n")
	} else {
		mt := table{header: []string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER", "IN INVENTORY"}}
		for _, m := range r.Members {
			status := "started"
			if !m.Started {
				status = "unstarted"
			}
			mt.rows = append(mt.rows, []string{m.ID, status, m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","),
				strconv.FormatBool(m.IsLearner), strconv.FormatBool(m.InInventory)})
		}
		mt.write(&b)
	}

	b.WriteString("\n")
	if len(r.Alarms) == 0 {
		b.WriteString("alarms: none\n")
	} else {
		at := table{header: []string{"MEMBER ID", "MEMBER", "ALARM"}}
		for _, a := range r.Alarms {
			at.rows = append(at.rows, []string{a.MemberID, a.Member, a.Alarm})
		}
		at.write(&b)
	}
	if len(r.Certificates) > 0 {
		b.WriteString("\n")
		ct := certsTable(r.Certificates)
		ct.write(&b)
	}
	if len(r.Proxies) > 0 {
		b.WriteString("\n")
		pt := table{header: []string{"CLIENT HOST", "MODE", "ADDRESS", "HEALTH", "FORWARDS TO", "MATCHES MEMBERS", "ERROR"}}
		for _, p := range r.Proxies {
			health := "healthy"
			if !p.Healthy {
				health = "unhealthy"
			}
			pt.rows = append(pt.rows, []string{p.Host, p.Mode, p.Address, health, strings.Join(p.Endpoints, ","), strconv.FormatBool(p.InStep), p.Error})
		}
		pt.write(&b)
	}
	b.WriteString("\n")
	if r.Healthy {
		fmt.Fprintf(&b, "cluster %s is healthy: %d members, leader %s\n", r.Cluster, len(r.Endpoints), r.Leader)
	} else {
		fmt.Fprintf(&b, "cluster %s is NOT healthy:\n", r.Cluster)
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("warnings:\n")
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "  - %s\n", w)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

// Bytes formats a size in SI units the way etcdctl does ("2.6 MB").
func Bytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	units := []string{"kB", "MB", "GB", "TB", "PB"}
	i := -1
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.0f %s", f, units[i])
}

// table renders an ASCII table with centred headers, like etcdctl's
// tablewriter output.
type table struct {
	header []string
	rows   [][]string
}

func (t table) write(b *strings.Builder) {
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = len(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	sep := func() {
		b.WriteString("+")
		for _, w := range width {
			b.WriteString(strings.Repeat("-", w+2) + "+")
		}
		b.WriteString("\n")
	}
	line := func(cells []string, centre bool) {
		b.WriteString("|")
		for i, w := range width {
			c := cells[i]
			pad := w - len(c)
			left := 0
			if centre {
				left = pad / 2
			}
			b.WriteString(" " + strings.Repeat(" ", left) + c + strings.Repeat(" ", pad-left) + " |")
		}
		b.WriteString("\n")
	}
	sep()
	line(t.header, true)
	sep()
	for _, r := range t.rows {
		line(r, false)
	}
	sep()
}
