package privacy

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/internal/jsonscan"
	"github.com/stele/stele/privacy/keystore"
)

// The compact sealed form (format 2). An image's personal fields are
// taken out of it and sealed together, one envelope per data group (one
// subject, one retention period), under a top-level member:
//
//	{"$pii":{"email,name,phone":"<base64url blob>"},"id":7,"notes":"…"}
//
// The member name lists the sealed fields' paths in the order their values
// are sealed; a path's segments are joined by "." and a segment's "~", "."
// and "," are written "~0", "~1" and "~2". The blob is binary:
//
//	+---------+------------+------------+----------+----------------------+---------+
//	| version | subject kid| period kid | salt     | ciphertext           | GCM tag |
//	| 1 byte  | 16 bytes   | 16 bytes   | 8 bytes  | len(plaintext) bytes | 16 bytes|
//	+---------+------------+------------+----------+----------------------+---------+
//
// The plaintext is each field's value in turn: a uvarint of its length
// shifted left once, with the low bit set for a JSON string whose quotes
// are left out, then the bytes (a string's body keeps its escapes).
//
// The associated data is "stele/seal/v2\0" ‖ record id ‖ 0 ‖ image ("key",
// "before", "after") ‖ 0 ‖ the field list ‖ 0 ‖ the blob's first 41 bytes,
// so an envelope moved to another record or image, given another field
// list, or pointed at other keys fails authentication. The GCM nonce is the
// first 12 bytes of SHA-256 of that associated data: distinct records
// never share one, and the 8 random bytes keep a record sealed twice under
// one id apart; storing the salt instead of a 12-byte nonce saves bytes in
// every envelope.
const (
	compactMember  = "$pii"
	compactVersion = 2
	kidLen         = 16
	saltSize       = 8
	compactHeader  = 1 + 2*kidLen + saltSize
	aadPrefixV2    = "stele/seal/v2\x00"
	kidTextLen     = 22 // base64url of kidLen bytes, as the keystore shows kids
)

var (
	compactMarker = []byte(`"` + compactMember + `":`)
	kidText       = base64.RawURLEncoding.Strict()
)

// escapeSegment writes a path segment as the field list spells it.
func escapeSegment(dst []byte, s string) []byte {
	if !strings.ContainsAny(s, "~.,") {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			dst = append(dst, "~0"...)
		case '.':
			dst = append(dst, "~1"...)
		case ',':
			dst = append(dst, "~2"...)
		default:
			dst = append(dst, s[i])
		}
	}
	return dst
}

// fieldToken is one path of a field list ("address.street").
func fieldToken(path []string) string {
	var b []byte
	for i, s := range path {
		if i > 0 {
			b = append(b, '.')
		}
		b = escapeSegment(b, s)
	}
	return string(b)
}

// parseFieldList reads a field list back into paths.
func parseFieldList(list string) ([][]string, error) {
	if list == "" {
		return nil, ErrBadEnvelope
	}
	var out [][]string
	for _, tok := range strings.Split(list, ",") {
		var path []string
		for _, seg := range strings.Split(tok, ".") {
			if seg == "" {
				return nil, ErrBadEnvelope
			}
			if strings.IndexByte(seg, '~') >= 0 {
				var b strings.Builder
				for i := 0; i < len(seg); i++ {
					if seg[i] != '~' {
						b.WriteByte(seg[i])
						continue
					}
					if i+1 == len(seg) {
						return nil, ErrBadEnvelope
					}
					i++
					switch seg[i] {
					case '0':
						b.WriteByte('~')
					case '1':
						b.WriteByte('.')
					case '2':
						b.WriteByte(',')
					default:
						return nil, ErrBadEnvelope
					}
				}
				seg = b.String()
			}
			path = append(path, seg)
		}
		out = append(out, path)
	}
	return out, nil
}

// appendPlainValue appends one field's value to a plaintext.
func appendPlainValue(dst, raw []byte) []byte {
	if len(raw) >= 2 && raw[0] == '"' {
		body := raw[1 : len(raw)-1]
		dst = binary.AppendUvarint(dst, uint64(len(body))<<1|1)
		return append(dst, body...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(raw))<<1)
	return append(dst, raw...)
}

// splitPlain reads n values back from a plaintext, as JSON values.
func splitPlain(pt []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for range n {
		h, k := binary.Uvarint(pt)
		if k <= 0 || h>>1 > uint64(len(pt)-k) {
			return nil, ErrBadEnvelope
		}
		body := pt[k : k+int(h>>1)]
		pt = pt[k+int(h>>1):]
		if h&1 == 1 {
			v := make([]byte, 0, len(body)+2)
			out = append(out, append(append(append(v, '"'), body...), '"'))
		} else {
			out = append(out, body)
		}
	}
	if len(pt) != 0 {
		return nil, ErrBadEnvelope
	}
	return out, nil
}

// compactAAD appends the associated data of one envelope to dst.
func compactAAD(dst []byte, recordID, image string, fields, header []byte) []byte {
	dst = append(dst, aadPrefixV2...)
	dst = append(append(dst, recordID...), 0)
	dst = append(append(dst, image...), 0)
	dst = append(append(dst, fields...), 0)
	return append(dst, header...)
}

// compactNonce is the GCM nonce of an envelope whose associated data is
// aad, in nonce.
func compactNonce(nonce *[nonceSize]byte, aad []byte) []byte {
	sum := sha256.Sum256(aad)
	copy(nonce[:], sum[:])
	return nonce[:]
}

// kidBytes is the binary form of a keystore kid.
func kidBytes(kid string) ([kidLen]byte, error) {
	var out [kidLen]byte
	if c, ok := keystore.CanonicalKid(kid); ok {
		kid = c
	}
	n, err := kidText.Decode(out[:], []byte(kid))
	if err != nil || n != kidLen || len(kid) != kidTextLen {
		return out, fmt.Errorf("privacy: key id %q is not in the keystore's form", kid)
	}
	return out, nil
}

// envelopeOut is one envelope of an image being sealed.
type envelopeOut struct {
	fields []byte // the field list
	blob   []byte // base64url text
}

// sealCompact seals one group's leaves of one image into an envelope.
func (s *sealing) sealCompact(side int, img []byte, gk *groupKeys, leaves []leaf, out *envelopeOut) error {
	fields := out.fields[:0]
	pt := s.scratch[:0]
	for i, l := range leaves {
		if i > 0 {
			fields = append(fields, ',')
		}
		fields = append(fields, l.field.token...)
		pt = appendPlainValue(pt, img[l.start:l.end])
	}
	salt, err := s.nonce(saltSize)
	if err != nil {
		return err
	}
	var header [compactHeader]byte
	header[0] = compactVersion
	copy(header[1:], gk.kidBin[:])
	copy(header[1+2*kidLen:], salt)
	s.aad = compactAAD(s.aad[:0], s.r.ID, sideNames[side], fields, header[:])
	s.ct = gk.aead.Seal(append(s.ct[:0], header[:]...), compactNonce(&s.nonceBuf, s.aad), pt, s.aad)
	clear(pt)
	s.scratch = pt
	out.fields = fields
	out.blob = base64.RawURLEncoding.AppendEncode(out.blob[:0], s.ct)
	return nil
}

// appendCompactMember appends `"$pii":{…}` holding envs, which are in
// canonical order.
func appendCompactMember(dst []byte, envs []envelopeOut) []byte {
	dst = append(dst, `"`+compactMember+`":{`...)
	for i, e := range envs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendName(dst, e.fields)
		dst = append(dst, ':', '"')
		dst = append(append(dst, e.blob...), '"')
	}
	return append(dst, '}')
}

// appendName appends a member name quoted as canonical JSON quotes it.
func appendName(dst, name []byte) []byte {
	plain := true
	for _, c := range name {
		if c < 0x20 || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain && utf8.Valid(name) {
		return append(append(append(dst, '"'), name...), '"')
	}
	out, err := jsontext.AppendQuote(dst, name)
	if err != nil {
		return append(append(append(dst, '"'), name...), '"')
	}
	return out
}

// canonicalLess orders member names as canonical JSON (RFC 8785) does: by
// UTF-16 code units.
func canonicalLess(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return utf16Units(ra) < utf16Units(rb)
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b != ""
}

// utf16Units is r's first UTF-16 code unit, which decides the order.
func utf16Units(r rune) uint32 {
	if r >= 0x10000 {
		hi, _ := utf16.EncodeRune(r)
		return uint32(hi)
	}
	return uint32(r)
}

// exciseMembers copies img without the members whose values are at spans
// (in document order), then inserts member at the top level in canonical
// order. img is a JSON object.
func exciseMembers(dst, img []byte, spans []span, member []byte) ([]byte, error) {
	start := len(dst)
	at := 0
	for _, sp := range spans {
		ns, err := memberStart(img, sp.start)
		if err != nil {
			return nil, err
		}
		dst = joinSegment(dst, start, img[at:ns])
		at = sp.end
	}
	dst = joinSegment(dst, start, img[at:])
	return insertTopMember(dst, start, member)
}

// memberStart is where the name of the member whose value starts at v
// begins: the images are canonical JSON, but spacing is allowed for.
func memberStart(img []byte, v int) (int, error) {
	i := v - 1
	for i >= 0 && isSpace(img[i]) {
		i--
	}
	if i < 0 || img[i] != ':' {
		return 0, fmt.Errorf("privacy: seal: no member name before byte %d", v)
	}
	i--
	for i >= 0 && isSpace(img[i]) {
		i--
	}
	if i < 0 || img[i] != '"' {
		return 0, fmt.Errorf("privacy: seal: no member name before byte %d", v)
	}
	for i--; i >= 0; i-- {
		if img[i] != '"' {
			continue
		}
		n := 0
		for j := i - 1; j >= 0 && img[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return i, nil
		}
	}
	return 0, fmt.Errorf("privacy: seal: no member name before byte %d", v)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// joinSegment appends seg to dst[start:], dropping the comma that taking
// a member out leaves doubled, leading or trailing.
func joinSegment(dst []byte, start int, seg []byte) []byte {
	if len(seg) == 0 {
		return dst
	}
	last := lastNonSpace(dst, start)
	first := jsonscan.Space(seg, 0)
	if first < len(seg) && seg[first] == ',' && (last == '{' || last == ',') {
		seg = seg[first+1:]
		first = jsonscan.Space(seg, 0)
	}
	if first < len(seg) && seg[first] == '}' && last == ',' {
		i := len(dst) - 1
		for isSpace(dst[i]) {
			i--
		}
		dst = append(dst[:i], dst[i+1:]...)
	}
	return append(dst, seg...)
}

func lastNonSpace(b []byte, start int) byte {
	for i := len(b) - 1; i >= start; i-- {
		if !isSpace(b[i]) {
			return b[i]
		}
	}
	return 0
}

// insertTopMember inserts member (`"name":value`) into the object at
// dst[start:] where canonical order puts it.
func insertTopMember(dst []byte, start int, member []byte) ([]byte, error) {
	obj := dst[start:]
	name := member[1 : bytes.IndexByte(member[1:], '"')+1] // a name with no escapes
	at := -1
	open := jsonscan.Space(obj, 0)
	// Most images' first member sorts after "$pii": then no walk is needed.
	if first := jsonscan.Space(obj, open+1); first < len(obj) && obj[first] == '"' {
		if end, escaped, err := jsonscan.Str(obj, first); err == nil && !escaped && canonicalLess(string(name), string(obj[first+1:end-1])) {
			at = first
		}
	}
	if at < 0 {
		_, err := jsonscan.Members(obj, open, 0, func(lit []byte, v int) (int, error) {
			if at < 0 && canonicalLess(string(name), jsonscan.Unquote(lit)) {
				at = cap(obj) - cap(lit) // lit is a subslice of obj
			}
			return jsonscan.Skip(obj, v, 1)
		})
		if err != nil {
			return nil, fmt.Errorf("privacy: seal: %w", err)
		}
	}
	var pre, post []byte
	switch {
	case at >= 0:
		post = []byte{','}
	default:
		// After the last member, or into an empty object.
		at = bytes.LastIndexByte(obj, '}')
		if lastNonSpace(obj[:at], 0) != '{' {
			pre = []byte{','}
		}
	}
	n := len(pre) + len(member) + len(post)
	at += start
	dst = slices.Grow(dst, n)[:len(dst)+n]
	copy(dst[at+n:], dst[at:len(dst)-n])
	copy(dst[at:], pre)
	copy(dst[at+len(pre):], member)
	copy(dst[at+len(pre)+len(member):], post)
	return dst, nil
}

// compactEnvelope is one envelope read from an image.
type compactEnvelope struct {
	raw    []byte // the member as stored, `"list":"blob"`
	list   string // the field list, as stored
	paths  [][]string
	blob   []byte
	values [][]byte // clear values, by path, once opened
	err    error    // why it could not be opened
}

// splitCompact takes the top-level $pii member out of img: rest is img
// without it. ok is false when img has none.
func splitCompact(img []byte) (rest []byte, envs []compactEnvelope, ok bool, err error) {
	if !bytes.Contains(img, compactMarker) {
		return img, nil, false, nil
	}
	open := jsonscan.Space(img, 0)
	if jsonscan.Kind(img, open) != jsonscan.Object {
		return img, nil, false, nil
	}
	var vs, ve, ns int
	found := false
	_, err = jsonscan.Members(img, open, 0, func(lit []byte, v int) (int, error) {
		end, err := jsonscan.Skip(img, v, 1)
		if err == nil && !found && string(lit) == `"`+compactMember+`"` {
			found, vs, ve, ns = true, v, end, cap(img)-cap(lit)
		}
		return end, err
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	if !found {
		return img, nil, false, nil
	}
	val := img[vs:ve]
	if jsonscan.Kind(val, 0) != jsonscan.Object {
		return nil, nil, true, ErrBadEnvelope
	}
	_, err = jsonscan.Members(val, 0, 1, func(lit []byte, v int) (int, error) {
		end, _, err := jsonscan.Str(val, v)
		if err != nil {
			return 0, ErrBadEnvelope
		}
		e := compactEnvelope{raw: val[cap(val)-cap(lit) : end], list: jsonscan.Unquote(lit)}
		if e.paths, err = parseFieldList(e.list); err != nil {
			return 0, err
		}
		if e.blob, err = base64.RawURLEncoding.Strict().AppendDecode(nil, val[v+1:end-1]); err != nil || len(e.blob) < compactHeader+tagSize || e.blob[0] != compactVersion {
			return 0, ErrBadEnvelope
		}
		envs = append(envs, e)
		return end, nil
	})
	if err != nil || len(envs) == 0 {
		return nil, nil, true, ErrBadEnvelope
	}
	rest = joinSegment(append([]byte(nil), img[:ns]...), 0, img[ve:])
	return rest, envs, true, nil
}

// openCompact opens each envelope of one image of record id, setting its
// values or its err (ErrKeyGone, ErrTampered, ErrBadEnvelope).
func (g *Guard) openCompact(ctx context.Context, recordID, image string, envs []compactEnvelope) {
	var aad []byte
	var nonce [nonceSize]byte
	for i := range envs {
		e := &envs[i]
		aead, err := g.compactAEAD(ctx, e.blob[1:1+2*kidLen])
		if err == nil {
			aad = compactAAD(aad[:0], recordID, image, []byte(e.list), e.blob[:compactHeader])
			var pt []byte
			if pt, err = aead.Open(nil, compactNonce(&nonce, aad), e.blob[compactHeader:], aad); err != nil {
				err = ErrTampered
			} else {
				e.values, err = splitPlain(pt, len(e.paths))
			}
		}
		e.err = err
	}
}

// compactAEAD is the field AEAD of the subject and period kids in kids
// (binary, 32 bytes).
func (g *Guard) compactAEAD(ctx context.Context, kids []byte) (cipher.AEAD, error) {
	var buf [2*kidTextLen + 1]byte
	kid := kidText.AppendEncode(buf[:0], kids[:kidLen])
	kid = append(kid, '.')
	kid = kidText.AppendEncode(kid, kids[kidLen:])
	return g.pairAEAD(ctx, kid)
}

// insertion is a value to put back at a path of an image.
type insertion struct {
	path  []string
	value []byte
}

// insertNode is one level of the insertions into an object.
type insertNode struct {
	name     string
	value    []byte // set on a leaf
	children []*insertNode
}

func insertTree(ins []insertion) []*insertNode {
	var root []*insertNode
	for _, in := range ins {
		level := &root
		for d, seg := range in.path {
			i := slices.IndexFunc(*level, func(n *insertNode) bool { return n.name == seg })
			if i < 0 {
				*level = append(*level, &insertNode{name: seg})
				i = len(*level) - 1
			}
			n := (*level)[i]
			if d == len(in.path)-1 {
				n.value = in.value
			}
			level = &n.children
		}
	}
	var sortLevel func([]*insertNode)
	sortLevel = func(l []*insertNode) {
		slices.SortFunc(l, func(a, b *insertNode) int {
			if canonicalLess(a.name, b.name) {
				return -1
			}
			if canonicalLess(b.name, a.name) {
				return 1
			}
			return 0
		})
		for _, n := range l {
			sortLevel(n.children)
		}
	}
	sortLevel(root)
	return root
}

// insertValues puts values back into the object img at their paths, each
// where canonical order places it; an object on the way that is missing is
// created. A path that the image already holds means the record was
// forged: ErrBadEnvelope.
func insertValues(img []byte, ins []insertion) ([]byte, error) {
	if len(ins) == 0 {
		return img, nil
	}
	start := jsonscan.Space(img, 0)
	if jsonscan.Kind(img, start) != jsonscan.Object {
		return nil, ErrBadEnvelope
	}
	out, _, err := mergeObject(make([]byte, 0, len(img)+64*len(ins)), img, start, 0, insertTree(ins))
	return out, err
}

func mergeObject(dst, img []byte, i, depth int, ins []*insertNode) ([]byte, int, error) {
	// A level of insertions under an object the image has merges into it
	// where that object is, which in an image out of canonical order need
	// not be where the name sorts: look for such objects first.
	var inside map[string]bool
	for _, n := range ins {
		if n.children != nil {
			inside = map[string]bool{}
			break
		}
	}
	if inside != nil {
		if _, err := jsonscan.Members(img, i, depth, func(lit []byte, v int) (int, error) {
			inside[jsonscan.Unquote(lit)] = true
			return jsonscan.Skip(img, v, depth+1)
		}); err != nil {
			return nil, 0, err
		}
	}
	done := make([]bool, len(ins))
	dst = append(dst, '{')
	first := true
	k := 0
	emit := func(n *insertNode) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendNode(dst, n)
	}
	end, err := jsonscan.Members(img, i, depth, func(lit []byte, v int) (int, error) {
		name := jsonscan.Unquote(lit)
		for ; k < len(ins) && canonicalLess(ins[k].name, name); k++ {
			if n := ins[k]; !done[k] && (n.children == nil || !inside[n.name]) {
				emit(n)
				done[k] = true
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(append(dst, lit...), ':')
		if j := slices.IndexFunc(ins, func(n *insertNode) bool { return n.name == name }); j >= 0 && !done[j] {
			n := ins[j]
			done[j] = true
			if n.value != nil || jsonscan.Kind(img, v) != jsonscan.Object {
				return 0, ErrBadEnvelope
			}
			var end int
			var err error
			dst, end, err = mergeObject(dst, img, v, depth+1, n.children)
			return end, err
		} else if j >= 0 {
			return 0, ErrBadEnvelope
		}
		end, err := jsonscan.Skip(img, v, depth+1)
		if err != nil {
			return 0, err
		}
		dst = append(dst, img[v:end]...)
		return end, nil
	})
	if err != nil {
		return nil, 0, err
	}
	for j, n := range ins {
		if !done[j] {
			emit(n)
		}
	}
	return append(dst, '}'), end, nil
}

func appendNode(dst []byte, n *insertNode) []byte {
	dst = appendName(dst, []byte(n.name))
	dst = append(dst, ':')
	if n.value != nil {
		return append(dst, n.value...)
	}
	dst = append(dst, '{')
	for i, c := range n.children {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendNode(dst, c)
	}
	return append(dst, '}')
}

// imagePath names a field of an image as errors and masks do
// ("after.address.street").
func imagePath(image string, path []string) string {
	return image + "." + strings.Join(path, ".")
}

// revealCompact rewrites the compact envelopes of one image. Each
// envelope is opened; keep reports whether it stays sealed as stored, and
// otherwise show gives each of its fields' value (e.values[j], or nothing
// when e.err says why it could not be opened). changed is false when img
// holds no envelope or every envelope was kept, and then out is img.
func (g *Guard) revealCompact(ctx context.Context, recordID, image string, img []byte, keep func(e *compactEnvelope) bool, show func(e *compactEnvelope, j int) []byte) (out []byte, changed bool, err error) {
	rest, envs, ok, err := splitCompact(img)
	if !ok {
		return img, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	g.openCompact(ctx, recordID, image, envs)
	var ins []insertion
	var kept []byte
	for i := range envs {
		e := &envs[i]
		if keep(e) {
			if kept != nil {
				kept = append(kept, ',')
			}
			kept = append(kept, e.raw...)
			continue
		}
		for j, p := range e.paths {
			ins = append(ins, insertion{path: p, value: show(e, j)})
		}
	}
	if len(ins) == 0 {
		return img, false, nil
	}
	if kept != nil {
		member := append(append([]byte(`"`+compactMember+`":{`), kept...), '}')
		if rest, err = insertTopMember(rest, 0, member); err != nil {
			return nil, false, err
		}
	}
	out, err = insertValues(rest, ins)
	return out, err == nil, err
}

// compactValues opens the compact envelopes of one image and returns the
// clear value of each field it could open, by path (segments joined by
// NUL); fail is told of each envelope that could not be opened.
func (g *Guard) compactValues(ctx context.Context, recordID, image string, img []byte, fail func(e *compactEnvelope)) (map[string][]byte, error) {
	_, envs, ok, err := splitCompact(img)
	if !ok || err != nil {
		return nil, err
	}
	g.openCompact(ctx, recordID, image, envs)
	out := map[string][]byte{}
	for i := range envs {
		e := &envs[i]
		if e.err != nil {
			fail(e)
			continue
		}
		for j, p := range e.paths {
			out[strings.Join(p, "\x00")] = e.values[j]
		}
	}
	return out, nil
}

// hasTopMember reports whether the object img has a member named name.
func hasTopMember(img []byte, name string) bool {
	open := jsonscan.Space(img, 0)
	if jsonscan.Kind(img, open) != jsonscan.Object {
		return false
	}
	found := false
	jsonscan.Members(img, open, 0, func(lit []byte, v int) (int, error) {
		found = found || jsonscan.Unquote(lit) == name
		return jsonscan.Skip(img, v, 1)
	})
	return found
}
