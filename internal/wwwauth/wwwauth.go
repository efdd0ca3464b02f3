// Package wwwauth parses WWW-Authenticate headers (RFC 9110 §11.6.1) far
// enough to read the error code of a Bearer challenge (RFC 6750 §3) or a
// DPoP one (RFC 9449 §7.1).
//
// COOP answers 401 for an unknown or expired token, for a missing scope and
// for a farm that is not the token's; only error="invalid_token" says the
// token itself is no good, so only that may cost a new token.
package wwwauth

import "strings"

// Challenge is one auth-scheme with its parameters. Scheme is lower-cased;
// parameter names are lower-cased; values are unquoted.
type Challenge struct {
	Scheme string
	Params map[string]string
}

// BearerError returns the error parameter of the first Bearer challenge found
// in any of the header values, or "" when there is none.
func BearerError(values []string) string { return SchemeError(values, "bearer") }

// SchemeError returns the error parameter of the first challenge of scheme
// (lower-case: "bearer", "dpop") found in any of the header values, or ""
// when there is none. A DPoP challenge (RFC 9449 §7.1) has the error codes
// of RFC 6750 §3.1, and use_dpop_nonce (§9).
func SchemeError(values []string, scheme string) string {
	for _, v := range values {
		for _, c := range Parse(v) {
			if c.Scheme == scheme {
				return c.Params["error"]
			}
		}
	}
	return ""
}

// Parse reads one WWW-Authenticate field value:
//
//	challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param  = token BWS "=" BWS ( token / quoted-string )
//
// Challenges and their parameters are both comma-separated, so a name
// followed by "=" is a parameter and a bare token starts a new challenge.
// Malformed input never panics: parsing stops at the first thing it cannot
// read and returns what it has.
func Parse(header string) []Challenge {
	var out []Challenge
	p := parser{s: header}
	for {
		p.skipSpaceAndCommas()
		scheme := p.token()
		if scheme == "" {
			return out
		}
		c := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		// token68 (RFC 9110 §11.2): a value with no name, e.g. "Basic abc=="
		p.skipSpace()
		if t, ok := p.token68(); ok {
			c.Params[""] = t
			out = append(out, c)
			continue
		}
		for {
			save := p.i
			p.skipSpaceAndCommas()
			name := p.token()
			p.skipSpace()
			if name == "" || !p.consume('=') {
				p.i = save // a new challenge (or the end)
				break
			}
			p.skipSpace()
			var val string
			if p.peek() == '"' {
				var ok bool
				if val, ok = p.quoted(); !ok {
					out = append(out, c)
					return out
				}
			} else {
				val = p.token()
			}
			c.Params[strings.ToLower(name)] = val
		}
		out = append(out, c)
	}
}

type parser struct {
	s string
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) consume(b byte) bool {
	if p.i < len(p.s) && p.s[p.i] == b {
		p.i++
		return true
	}
	return false
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) skipSpaceAndCommas() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

// token reads RFC 9110 §5.6.2 tchar+.
func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// token68 reads a token68 (RFC 9110 §11.2) only when it is followed by the
// end or a comma; "a=b" parameters are left alone, since a parameter's value
// can never be empty.
func (p *parser) token68() (string, bool) {
	start := p.i
	j := p.i
	for j < len(p.s) && (isAlnum(p.s[j]) || strings.IndexByte("-._~+/", p.s[j]) >= 0) {
		j++
	}
	if j == start {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	k := j
	for k < len(p.s) && (p.s[k] == ' ' || p.s[k] == '\t') {
		k++
	}
	if k < len(p.s) && p.s[k] != ',' {
		return "", false
	}
	p.i = j
	return p.s[start:j], true
}

// quoted reads an RFC 9110 §5.6.4 quoted-string with backslash escapes.
func (p *parser) quoted() (string, bool) {
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '"':
			p.i++
			return b.String(), true
		case '\\':
			p.i++
			if p.i >= len(p.s) {
				return b.String(), false
			}
			c = p.s[p.i]
		}
		b.WriteByte(c)
		p.i++
	}
	return b.String(), false
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isTchar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
