package user

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// The account databases useradd and groupadd maintain. Variables so tests
// can plan against recorded files.
var (
	PasswdFile = "/etc/passwd"
	GroupFile  = "/etc/group"
)

// Account is one /etc/passwd entry.
type Account struct {
	Name    string
	UID     int
	GID     int
	Comment string
	Home    string
	Shell   string
}

// Group is one /etc/group entry.
type Group struct {
	Name string
	GID  int
}

// LookupAccount finds name in PasswdFile; ok is false when absent.
func LookupAccount(name string) (a Account, ok bool, err error) {
	err = scan(PasswdFile, 7, func(f []string) bool {
		if f[0] != name {
			return false
		}
		a = Account{Name: f[0], Comment: f[4], Home: f[5], Shell: f[6]}
		a.UID, _ = strconv.Atoi(f[2])
		a.GID, _ = strconv.Atoi(f[3])
		ok = true
		return true
	})
	return a, ok, err
}

// LookupGroup finds a group by name, or else by number when name is one,
// in GroupFile; ok is false when absent.
func LookupGroup(name string) (g Group, ok bool, err error) {
	for _, field := range []int{0, 2} {
		err = scan(GroupFile, 4, func(f []string) bool {
			if f[field] != name {
				return false
			}
			g = Group{Name: f[0]}
			g.GID, _ = strconv.Atoi(f[2])
			ok = true
			return true
		})
		if ok || err != nil {
			break
		}
	}
	return g, ok, err
}

// GroupByID names gid, or returns it as a number.
func GroupByID(gid int) string {
	if g, ok, _ := LookupGroup(strconv.Itoa(gid)); ok {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// scan calls match on each colon-separated entry with at least n fields
// until it returns true.
func scan(path string, n int, match func([]string) bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue // NIS compat entries are not ours to manage
		}
		fields := strings.Split(line, ":")
		if len(fields) < n {
			continue
		}
		if match(fields) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
