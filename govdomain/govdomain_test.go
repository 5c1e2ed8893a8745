package govdomain

import "testing"

func TestUnder(t *testing.T) {
	t.Parallel()
	test := func(domain, suffix string, want bool) {
		t.Helper()
		if got := Under(domain, suffix); got != want {
			t.Errorf("Under(%q, %q) = %v, want %v", domain, suffix, got, want)
		}
	}
	test("mhlw.go.jp", "go.jp", true)
	test("MHLW.Go.JP.", "go.jp", true)
	test("a.b.example.go.jp", "go.jp", true)
	test("go.jp", "go.jp", false)
	test("evilgo.jp", "go.jp", false)
	test("go.jp.example.com", "go.jp", false)
	test("mhlw.go.jp.", "GO.JP", true)
	test("", "go.jp", false)
	test("bad..go.jp", "go.jp", false)
	test("under_score.go.jp", "go.jp", false)
	// A U-label is compared in its A-label form: the same name matches,
	// a look-alike (fullwidth dot is mapped, Cyrillic o is not) does not.
	test("例え.go.jp", "go.jp", true)
	test("mhlw.gо.jp", "go.jp", false) // Cyrillic о
	test("xn--mhlw-go-jp.example", "go.jp", false)
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	p := Policy{Suffixes: DefaultSuffixes}
	if !p.AllowsAddress("taro@example.go.jp") {
		t.Error("example.go.jp refused")
	}
	for _, a := range []string{"taro@evilgo.jp", "taro", "taro@go.jp", `"x@example.go.jp"@evil.example`} {
		if p.AllowsAddress(a) {
			t.Errorf("%q allowed", a)
		}
	}
	if (Policy{}).Allows("example.go.jp") {
		t.Error("zero policy allows")
	}
	if !Within("go.jp", "go.jp") || !Within("a.go.jp", "go.jp") || Within("ago.jp", "go.jp") {
		t.Error("Within")
	}
}
