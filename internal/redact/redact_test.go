package redact

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestFingerprint(t *testing.T) {
	a, b := Fingerprint("834401f20deb9ba7ee94615b5ceedf1aba2187f1"), Fingerprint("834401f20deb9ba7ee94615b5ceedf1aba2187f2")
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+8 || a == b {
		t.Fatalf("fingerprints %q %q", a, b)
	}
	if Fingerprint("") != "" {
		t.Fatal("the empty secret has a fingerprint")
	}
}

func TestSecretNeverPrintsItself(t *testing.T) {
	s := Secret("hunter2-abcdef")
	js, _ := json.Marshal(struct{ S Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), string(js), fmt.Sprintf("%+v", struct{ S Secret }{s})} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2-abcdef" {
		t.Fatal("Reveal")
	}
}

// %p is left out: fmt handles it before any method of the operand, and for a
// string kind prints the raw value as its "bad verb" text (see Secret).
func TestSecretIsRedactedUnderEveryVerb(t *testing.T) {
	s := Secret("hunter2-abcdef")
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%o", "%b", "%c", "%U", "%e", "%g", "%t", "%10.3s", "%-20q", "%08x"} {
		for name, out := range map[string]string{
			"value":   fmt.Sprintf(verb, s),
			"pointer": fmt.Sprintf(verb, &s),
			"slice":   fmt.Sprintf(verb, []Secret{s}),
			"struct":  fmt.Sprintf(verb, struct{ S Secret }{s}),
		} {
			if strings.Contains(out, "hunter") || strings.Contains(out, "68756e746572") || strings.Contains(out, "68 75 6e") {
				t.Errorf("%s of a %s printed the secret: %s", verb, name, out)
			}
		}
	}
}
