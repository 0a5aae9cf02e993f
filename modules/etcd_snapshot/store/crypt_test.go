package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func identityFile(t *testing.T, mode os.FileMode) (string, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(p, []byte("# created: test\n"+id.String()+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p, id
}

func TestEncryptDecrypt(t *testing.T) {
	path, id := identityFile(t, 0o600)
	rs, err := Recipients([]string{id.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("etcd snapshot "), 1000)
	var ct bytes.Buffer
	if err := Encrypt(&ct, bytes.NewReader(plain), rs); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct.Bytes(), []byte("etcd snapshot")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	ids, err := Identities(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Decrypt(&out, bytes.NewReader(ct.Bytes()), ids, path); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), plain) {
		t.Fatal("round trip changed the snapshot")
	}

	otherPath, _ := identityFile(t, 0o600)
	other, _ := Identities(otherPath)
	err = Decrypt(&out, bytes.NewReader(ct.Bytes()), other, otherPath)
	if err == nil || !strings.Contains(err.Error(), "is not one the backup was encrypted to") {
		t.Fatalf("wrong identity: %v", err)
	}
}

func TestBadKeys(t *testing.T) {
	if _, err := Recipients([]string{"age1notakey"}); err == nil || !strings.Contains(err.Error(), "recipient 1") {
		t.Errorf("bad recipient: %v", err)
	}
	open, _ := identityFile(t, 0o644)
	if _, err := Identities(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable identity: %v", err)
	}
}
