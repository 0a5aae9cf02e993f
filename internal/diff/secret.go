package diff

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

var (
	privateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	// A line assigning a value to a key whose name ends in a word that
	// means "credential": password: x, ETCDCTL_PASSWORD=x, client_secret: x,
	// api-key = x, token: x, and a kubeconfig's client-key-data (a private
	// key in base64, which the PEM pattern cannot see).
	secretVar = regexp.MustCompile(`(?im)^[ \t]*(?:export[ \t]+)?["']?([\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|key[_-]?data))["']?[ \t]*[:=][ \t]*["']?([^\s"'#]+)`)
)

// notSecret are keys that end like a credential but hold none: etcd's
// cluster token is an identifier printed in logs, and auth-token names a
// token provider. Masking them would hide the most useful diff, etcd.yaml.
var notSecret = map[string]bool{
	"initial-cluster-token": true,
	"auth-token":            true,
	"auth-token-ttl":        true,
}

// IsSecret reports whether content holds a private key or a line that sets
// a password, secret, token or API key.
func IsSecret(content string) bool {
	if privateKey.MatchString(content) {
		return true
	}
	for _, m := range secretVar.FindAllStringSubmatch(content, -1) {
		key := strings.ToLower(strings.TrimLeft(m[1], "-"))
		if !notSecret[key] {
			return true
		}
	}
	return false
}

// IsBinary reports whether content is not text a terminal can show.
func IsBinary(content string) bool {
	return !utf8.ValidString(content) || strings.IndexByte(content, 0) >= 0
}

// Hash is how a masked side is shown and carried: "sha256:<hex>".
func Hash(content string) string {
	s := sha256.Sum256([]byte(content))
	return "sha256:" + hex.EncodeToString(s[:])
}

// NewFileDiff is how modules build a FileDiff: when secret is set, or
// either side looks secret or binary, the content is replaced by hashes
// before the diff leaves the host, so it is never sent, logged or printed.
func NewFileDiff(path, before, after string, secret bool) modules.FileDiff {
	if secret || IsSecret(before) || IsSecret(after) || IsBinary(before) || IsBinary(after) {
		return modules.FileDiff{Path: path, Before: maskSide(before), After: maskSide(after), Secret: true}
	}
	return modules.FileDiff{Path: path, Before: before, After: after}
}

// OfHostFile is NewFileDiff for a host file as hostfile.State read it
// (cur) and the content it is to get: a side too large to hold in memory
// (hostfile.MaxContent) is shown by its hash, like a secret; a diff of
// megabytes helps no one reading a plan.
func OfHostFile(path string, cur hostfile.FileState, after []byte, secret bool) modules.FileDiff {
	if (cur.Exists && !cur.HasContent) || len(after) > hostfile.MaxContent {
		before := ""
		if cur.Exists {
			before = "sha256:" + cur.SHA256
		}
		return modules.FileDiff{Path: path, Before: before, After: "sha256:" + hostfile.SumHex(after), Secret: true}
	}
	return NewFileDiff(path, string(cur.Content), string(after), secret)
}

func maskSide(s string) string {
	if s == "" {
		return ""
	}
	return Hash(s)
}

// Render formats one file diff for --diff: a unified diff, or for a secret
// only a header line per side with a short hash ("(empty)" for an absent
// or empty side). It prints "" when nothing differs.
func Render(fd modules.FileDiff) string {
	if fd.Before == fd.After {
		return ""
	}
	if !fd.Secret && !IsBinary(fd.Before) && !IsBinary(fd.After) {
		return Unified(fd.Path, fd.Before, fd.After)
	}
	return fmt.Sprintf("--- %s (%s)\n+++ %s (%s)\n", fd.Path, label(fd.Before), fd.Path, label(fd.After))
}

// label shows a masked side. A side that still holds content (a FileDiff
// built by hand) is hashed here, so Render never prints a secret.
func label(s string) string {
	if s == "" {
		return "empty"
	}
	h := s
	if !isHash(s) {
		h = Hash(s)
	}
	return h[:len("sha256:")+16] + "..."
}

func isHash(s string) bool {
	if len(s) != len("sha256:")+64 || !strings.HasPrefix(s, "sha256:") {
		return false
	}
	_, err := hex.DecodeString(s[len("sha256:"):])
	return err == nil
}
