package proxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"
)

// A caller's own token must not reach COOP beside coop-proxy's (RFC 6750 §2:
// a client "MUST NOT use more than one method"; and the caller's token is
// not ours to forward). COOP runs PHP (bshaffer/oauth2-server-php), which
// reads a token from the access_token query parameter (RFC 6750 §2.3) and
// form field (§2.2), and PHP reads field names its own way: this file finds
// every field PHP would read as access_token.

// tokenParam is the field COOP reads a token from.
const tokenParam = "access_token"

// formCheckLimit is the largest form body read to look for a token when
// RetryBodyLimit is smaller: a form is checked up to the larger of the two,
// and a larger one is refused, never forwarded unchecked.
const formCheckLimit = 1 << 20

// namesAccessToken reports whether PHP reads the field name raw as
// access_token, or as an array under access_token. raw is still %-encoded
// when encoded is set (a query or an urlencoded form: php_url_decode,
// '+' is a space); a multipart name is not. PHP (main/php_variables.c,
// php_register_variable_ex) ends a name at a NUL, skips leading spaces,
// reads ' ' and '.' as '_', makes name[...] an array under name, and reads
// a '[' with no ']' after it as '_'. It allocates nothing.
func namesAccessToken(raw string, encoded bool) bool {
	d := nameReader{s: raw, encoded: encoded}
	c, ok := d.next()
	for ok && c == ' ' {
		c, ok = d.next()
	}
	for i := 0; i < len(tokenParam); i++ {
		if !ok {
			return false
		}
		switch c {
		case ' ', '.':
			c = '_'
		case '[':
			if d.closes() {
				return false // an array under a shorter name
			}
			c = '_'
		}
		if c != tokenParam[i] {
			return false
		}
		c, ok = d.next()
	}
	// access_token itself, or access_token[...] (an earlier lone '[' has no
	// ']' after it, so closes is false then)
	return !ok || c == '[' && d.closes()
}

// nameReader yields the bytes of a field name as PHP decodes it.
type nameReader struct {
	s       string
	encoded bool
}

// next returns the next byte, or false at the end or at a NUL (PHP's names
// are C strings).
func (d *nameReader) next() (byte, bool) {
	if d.s == "" {
		return 0, false
	}
	c, n := d.s[0], 1
	if d.encoded {
		switch {
		case c == '+':
			c = ' '
		case c == '%' && len(d.s) > 2 && ishex(d.s[1]) && ishex(d.s[2]):
			c, n = unhex(d.s[1])<<4|unhex(d.s[2]), 3
		}
	}
	if c == 0 {
		d.s = ""
		return 0, false
	}
	d.s = d.s[n:]
	return c, true
}

// closes reports whether a ']' is still to come.
func (d nameReader) closes() bool {
	for c, ok := d.next(); ok; c, ok = d.next() {
		if c == ']' {
			return true
		}
	}
	return false
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// stripTokenFields returns an urlencoded query or form without the fields
// PHP reads as access_token, the others kept byte for byte and in order. It
// returns false for one Go's parser refuses (url.ParseQuery: a ';', or a
// '%' without two hex digits), which cannot be checked: PHP splits at ';'
// too when arg_separator.input says so. The fast path, for a form with
// neither '%' nor ';' nor "access", allocates nothing.
func stripTokenFields(form string) (string, bool) {
	if strings.IndexByte(form, '%') < 0 && strings.IndexByte(form, ';') < 0 && !strings.Contains(form, "access") {
		return form, true
	}
	drop := false
	for field := range strings.SplitSeq(form, "&") {
		if strings.IndexByte(field, ';') >= 0 || !validEscapes(field) {
			return "", false
		}
		drop = drop || isTokenField(field)
	}
	if !drop {
		return form, true
	}
	var b strings.Builder
	for field := range strings.SplitSeq(form, "&") {
		if !isTokenField(field) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(field)
		}
	}
	return b.String(), true
}

func isTokenField(field string) bool {
	name, _, _ := strings.Cut(field, "=")
	return namesAccessToken(name, true)
}

func validEscapes(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; i = strings.IndexByte(s, '%') {
		if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
			return false
		}
		s = s[i+3:]
	}
	return true
}

// formKind is how COOP reads a request body.
type formKind int

const (
	notForm formKind = iota
	urlEncoded
	multipartForm
)

// formOf says whether COOP reads the body as a form. PHP reads one into
// $_POST when the Content-Type, lower-cased and cut at ';', ',' or ' ' (main/
// SAPI.c), is application/x-www-form-urlencoded or multipart/form-data, and
// bshaffer's Request parses one for PUT and DELETE whenever the Content-Type
// merely starts with application/x-www-form-urlencoded. Comparing prefixes
// without case covers both, and mime.ParseMediaType's media type (lower-
// cased, parameters allowed) too.
func formOf(h map[string][]string) formKind {
	ct := strings.TrimLeft(firstValue(h, "Content-Type"), " \t")
	switch {
	case hasPrefixFold(ct, "application/x-www-form-urlencoded"):
		return urlEncoded
	case hasPrefixFold(ct, "multipart/form-data"):
		return multipartForm
	}
	return notForm
}

func firstValue(h map[string][]string, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// checkForm returns a form body without the fields COOP would read as
// access_token, or errUncheckable.
func checkForm(form formKind, h map[string][]string, body []byte) ([]byte, error) {
	// One Content-Type, and no Content-Encoding: a server in front of PHP
	// may decode what coop-proxy cannot read.
	if len(h["Content-Type"]) != 1 || len(h["Content-Encoding"]) != 0 {
		return nil, errUncheckable
	}
	if form == multipartForm {
		return stripTokenParts(h["Content-Type"][0], body)
	}
	kept, ok := stripTokenFields(string(body))
	switch {
	case !ok:
		return nil, errUncheckable
	case len(kept) == len(body):
		return body, nil
	}
	return []byte(kept), nil
}

// errUncheckable: a form in which COOP could read fields that coop-proxy
// cannot tell apart.
var errUncheckable = errors.New("uncheckable form")

// stripTokenParts returns a multipart/form-data body without the parts PHP
// (main/rfc1867.c) or Go would read as access_token. It refuses
// (errUncheckable) a body the two could split differently: PHP takes the
// boundary from the first "boundary" in the Content-Type and splits at any
// line that starts with "--" and the boundary, so the boundary must read the
// same both ways and occur only at the delimiters Go found (RFC 2046 §5.1.1).
func stripTokenParts(contentType string, body []byte) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	boundary := params["boundary"]
	if err != nil || mt != "multipart/form-data" || boundary == "" || phpBoundary(contentType) != boundary {
		return nil, errUncheckable
	}
	var drop []bool
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errUncheckable
		}
		drop = append(drop, namesTokenPart(p.Header))
	}
	delim := []byte("--" + boundary)
	if bytes.Count(body, delim) != len(drop)+1 {
		return nil, errUncheckable
	}
	if !slices.Contains(drop, true) {
		return body, nil
	}
	// Part i runs from its delimiter to the next one, whose leading CRLF
	// it includes: cutting it leaves the body well-formed.
	out := body[:0:0]
	at := bytes.Index(body, delim)
	out = append(out, body[:at]...)
	for _, dropped := range drop {
		next := at + len(delim) + bytes.Index(body[at+len(delim):], delim)
		if !dropped {
			out = append(out, body[at:next]...)
		}
		at = next
	}
	return append(out, body[at:]...), nil
}

// namesTokenPart reports whether PHP or Go reads any Content-Disposition of
// a part as naming access_token.
func namesTokenPart(h textproto.MIMEHeader) bool {
	for _, cd := range h["Content-Disposition"] {
		if namesAccessToken(phpPartName(cd), false) {
			return true
		}
		if _, params, err := mime.ParseMediaType(cd); err == nil && namesAccessToken(params["name"], false) {
			return true
		}
	}
	return false
}

// phpPartName returns the name PHP's multipart parser reads from a
// Content-Disposition value (main/rfc1867.c): the last name= parameter
// whatever the disposition type, the key compared without case, the value
// unquoted from double or single quotes with backslash escapes, or up to a
// space.
func phpPartName(cd string) string {
	var name string
	cd = strings.TrimLeft(cd, cSpace)
	for cd != "" {
		var pair string
		pair, cd = phpWord(cd, ';')
		cd = strings.TrimLeft(cd, cSpace)
		if !strings.Contains(pair, "=") {
			continue
		}
		if key, value := phpWord(pair, '='); strings.EqualFold(key, "name") {
			name = phpWordConf(value)
		}
	}
	return name
}

// cSpace is what C's isspace matches.
const cSpace = " \t\n\v\f\r"

// phpWord is php_ap_getword: s up to stop, outside quotes, and the rest
// after any run of stop.
func phpWord(s string, stop byte) (word, rest string) {
	i := 0
	for i < len(s) && s[i] != stop {
		if q := s[i]; q == '"' || q == '\'' {
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
					i++
				}
			}
		}
		if i < len(s) {
			i++
		}
	}
	word = s[:i]
	for i < len(s) && s[i] == stop {
		i++
	}
	return word, s[i:]
}

// phpWordConf is php_ap_getword_conf: a value quoted with " or ', or up to
// a space, with \\ and \<quote> unescaped.
func phpWordConf(s string) string {
	s = strings.TrimLeft(s, cSpace)
	var quote byte
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		quote, s = s[0], s[1:]
	} else if i := strings.IndexAny(s, cSpace); i >= 0 {
		s = s[:i]
	}
	var b strings.Builder
	for i := 0; i < len(s) && (quote == 0 || s[i] != quote); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || quote != 0 && s[i+1] == quote) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// phpBoundary returns the boundary PHP reads from a multipart Content-Type
// (main/rfc1867.c): after the first "boundary" (looked for with case, then
// without) and its '=', quoted, or up to ',' or ';'.
func phpBoundary(ct string) string {
	i := strings.Index(ct, "boundary")
	if i < 0 {
		i = indexFold(ct, "boundary")
	}
	if i < 0 {
		return ""
	}
	_, b, ok := strings.Cut(ct[i:], "=")
	if !ok {
		return ""
	}
	if strings.HasPrefix(b, `"`) {
		b, _, ok = strings.Cut(b[1:], `"`)
		if !ok {
			return ""
		}
		return b
	}
	if end := strings.IndexAny(b, ",;"); end >= 0 {
		b = b[:end]
	}
	return b
}

// indexFold is strings.Index without ASCII case.
func indexFold(s, substr string) int {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return i
		}
	}
	return -1
}
