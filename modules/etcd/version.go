package etcd

import (
	"fmt"
	"regexp"
	"strconv"
)

// Version is an etcd release version such as v3.6.16.
type Version struct {
	Major, Minor, Patch int
}

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)

// oldestSupported is the oldest release the modules know how to configure:
// 3.4 is the first with the zap logger and the config-file layout we render.
var oldestSupported = Version{3, 4, 0}

// ValidVersion checks a version argument (modules.Param.Valid): empty, or
// one ParseVersion takes.
func ValidVersion(s string) error {
	if s == "" {
		return nil
	}
	_, err := ParseVersion(s)
	return err
}

// ParseVersion parses "vX.Y.Z" and refuses releases the modules cannot
// drive (before v3.4, or another major version).
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("%q is not an etcd release version (want vX.Y.Z, e.g. %s)", s, DefaultVersion)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	if v.Major != 3 || v.Less(oldestSupported) {
		return Version{}, fmt.Errorf("etcd %s is not supported (etcdplay drives v3.4 and later 3.x releases)", s)
	}
	return v, nil
}

func (v Version) String() string { return fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return !v.Less(Version{major, minor, 0})
}

// HasOption reports whether this release still reads the etcd.yaml key, so
// a config never carries an option the binary silently ignores.
func (v Version) HasOption(key string) bool {
	return removedIn(key) == nil || v.Less(*removedIn(key))
}

// removedIn returns the first release that no longer has the config key.
func removedIn(key string) *Version {
	switch {
	case key == "enable-v2":
		return &Version{3, 6, 0}
	case key == "discovery" || key == "discovery-proxy":
		return &Version{3, 7, 0}
	case len(key) > len("experimental-") && key[:len("experimental-")] == "experimental-":
		// 3.6 renamed the experimental-* options; 3.7 dropped the old names.
		return &Version{3, 7, 0}
	}
	return nil
}
