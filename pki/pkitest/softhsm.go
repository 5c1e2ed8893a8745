package pkitest

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kakuin/kakuin/pki"
)

// SoftHSMModule is where Debian's softhsm2 package puts the PKCS#11
// module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is a SoftHSM2 token (Debian package softhsm2, which `make deps`
// installs) standing in for an agency's HSM: keys are imported into it
// and used through PKCS#11 by URI, the way kakuin uses a real HSM.
//
// SoftHSM reads its configuration (SOFTHSM2_CONF, the token directory)
// when the module is loaded, and a loaded module does not see tokens made
// after it: NewSoftHSM sets the variable for the test, and unloads the
// module (pki.ClosePKCS11) when the test ends, so that the next test loads
// it afresh.
type SoftHSM struct {
	// Token is the token label, PINFile the file (mode 0600) holding its
	// user PIN.
	Token, PINFile string
	dir            string
}

// NewSoftHSM makes a SoftHSM2 configuration and token directory in a
// temporary directory, points SOFTHSM2_CONF at it (tb.Setenv: the test
// may not be parallel) and initialises a token with a random PIN. It fails
// the test if softhsm2-util is missing.
func NewSoftHSM(tb testing.TB) *SoftHSM {
	tb.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		tb.Fatal("pkitest: softhsm2-util not found: install Debian's softhsm2 (make deps)")
	}
	dir := tb.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("SOFTHSM2_CONF", conf)
	tb.Cleanup(pki.ClosePKCS11) // runs before the variable is restored
	var pin [8]byte
	rand.Read(pin[:])
	h := &SoftHSM{Token: "kakuin-test", PINFile: filepath.Join(dir, "hsm.pin"), dir: dir}
	if err := os.WriteFile(h.PINFile, []byte(hex.EncodeToString(pin[:])+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	h.util(tb, "--init-token", "--free", "--label", h.Token, "--pin", hex.EncodeToString(pin[:]), "--so-pin", hex.EncodeToString(pin[:]))
	return h
}

func (h *SoftHSM) util(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("softhsm2-util", args...).CombinedOutput(); err != nil {
		tb.Fatalf("softhsm2-util %s: %v\n%s", args[0], err, out)
	}
}

func (h *SoftHSM) pin(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(h.PINFile)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b[:len(b)-1])
}

// Import puts key (RSA or ECDSA) into the token under label and returns
// the pkcs11: URI that names it, ready to be written into a key file in
// place of the PEM key.
func (h *SoftHSM) Import(tb testing.TB, label string, key crypto.Signer) string {
	tb.Helper()
	pemKey, err := pki.MarshalKeyPEM(key)
	if err != nil {
		tb.Fatal(err)
	}
	f := filepath.Join(h.dir, "import-"+label+".pem")
	if err := os.WriteFile(f, pemKey, 0o600); err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(f)
	var id [4]byte
	rand.Read(id[:])
	h.util(tb, "--import", f, "--token", h.Token, "--label", label, "--id", hex.EncodeToString(id[:]), "--pin", h.pin(tb))
	return "pkcs11:token=" + h.Token + ";object=" + label + ";type=private?module-path=" + SoftHSMModule + "&pin-source=" + h.PINFile
}

// DeleteToken removes the token and every key in it, as an HSM that went
// away: signatures with its keys fail from then on.
func (h *SoftHSM) DeleteToken(tb testing.TB) {
	tb.Helper()
	h.util(tb, "--delete-token", "--token", h.Token)
}
