package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// Recipients parses age recipients ("age1..." X25519 public keys, one per
// entry). An empty list means no encryption.
func Recipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for i, k := range keys {
		k = strings.TrimSpace(k)
		r, err := age.ParseX25519Recipient(k)
		if err != nil {
			return nil, fmt.Errorf("recipient %d (%.12s...): %w; an age recipient looks like age1... (age-keygen -y IDENTITY_FILE prints it)", i+1, k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Identities reads an age identity file (age-keygen's output). It must
// not be readable by others: it decrypts every backup.
func Identities(path string) ([]age.Identity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("age identity file %s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", path, err)
	}
	return ids, nil
}

// Encrypt copies plaintext src to dst encrypted to the recipients.
func Encrypt(dst io.Writer, src io.Reader, rs []age.Recipient) error {
	w, err := age.Encrypt(dst, rs...)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return nil
}

// Decrypt copies ciphertext src to dst in plaintext. A key that does not
// match says so, naming the identity file.
func Decrypt(dst io.Writer, src io.Reader, ids []age.Identity, idFile string) error {
	r, err := age.Decrypt(src, ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return fmt.Errorf("decrypt: the identity in %s is not one the backup was encrypted to (etcd_backup_age_recipients when it was taken)", idFile)
		}
		return fmt.Errorf("decrypt: %w", err)
	}
	if _, err := io.Copy(dst, r); err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	return nil
}
