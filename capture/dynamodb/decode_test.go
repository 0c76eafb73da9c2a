package dynamodb

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/stele/stele/record"
)

func TestAttrJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    types.AttributeValue
		want string
	}{
		{"S escapes", &types.AttributeValueMemberS{Value: "a\"b\\c\x01\t\u00e9\xff"}, `"a\"b\\c\u0001\té` + "\uFFFD" + `"`},
		{"N exact", &types.AttributeValueMemberN{Value: "123456789012345678901234567890.12345678"}, "123456789012345678901234567890.12345678"},
		{"N exponent", &types.AttributeValueMemberN{Value: "1E+130"}, "1E+130"},
		{"N plus sign", &types.AttributeValueMemberN{Value: "+5"}, "5"},
		{"N leading dot", &types.AttributeValueMemberN{Value: "-.5"}, "-0.5"},
		{"N leading zeros", &types.AttributeValueMemberN{Value: "007.50"}, "7.50"},
		{"B", &types.AttributeValueMemberB{Value: []byte("hi")}, `"aGk="`},
		{"BOOL", &types.AttributeValueMemberBOOL{Value: false}, "false"},
		{"NULL", &types.AttributeValueMemberNULL{Value: true}, "null"},
		{"L", &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberL{}}}, "[1,[]]"},
		{"M sorted", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"z": &types.AttributeValueMemberS{Value: "1"}, "a": &types.AttributeValueMemberM{}}}, `{"a":{},"z":"1"}`},
		{"SS sorted", &types.AttributeValueMemberSS{Value: []string{"b", "B", "a"}}, `["B","a","b"]`},
		{"NS sorted by value", &types.AttributeValueMemberNS{Value: []string{"10", "9.5", "-100", "1E+2"}}, "[-100,9.5,10,1E+2]"},
		{"BS sorted by bytes", &types.AttributeValueMemberBS{Value: [][]byte{{0xff}, {0x00, 0x01}, {0x00}}}, `["AA==","AAE=","/w=="]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendAttr(nil, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("%s is not valid JSON", got)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		v     types.AttributeValue
		wants string
	}{
		{"N not a number", &types.AttributeValueMemberN{Value: "12abc"}, "a number of 5 characters is not a decimal number"},
		{"NS member", &types.AttributeValueMemberNS{Value: []string{"1", "x"}}, "number set member 1 is not a decimal number"},
		{"NS huge exponent", &types.AttributeValueMemberNS{Value: []string{"1e999999999"}}, "out of DynamoDB's range"},
		{"N huge exponent", &types.AttributeValueMemberN{Value: "+1e999999999"}, "out of DynamoDB's range"},
		{"nested path", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"m": &types.AttributeValueMemberL{Value: []types.AttributeValue{nil}}}}, "m: [0]: attribute value missing"},
		{"unknown type", &types.UnknownUnionMember{Tag: "X"}, "unknown type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := appendAttr(nil, tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Errorf("err = %v, want one saying %q", err, tc.wants)
			}
		})
	}
}

func streamRecord(op types.OperationType, oldImg, newImg map[string]types.AttributeValue) *types.Record {
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	return &types.Record{
		EventID: aws.String("ev1"), EventName: op,
		Dynamodb: &types.StreamRecord{
			ApproximateCreationDateTime: &at, SequenceNumber: aws.String("4900000000000000000001"),
			Keys:     map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}, "sk": &types.AttributeValueMemberN{Value: "2"}},
			OldImage: oldImg, NewImage: newImg,
		},
	}
}

func item(kv ...any) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}, "sk": &types.AttributeValueMemberN{Value: "2"}}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(types.AttributeValue)
	}
	return m
}

func ctxAttr(js string) types.AttributeValue { return &types.AttributeValueMemberS{Value: js} }

func TestDecode(t *testing.T) {
	d := decoder{source: "src", table: "T"}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

	r, err := d.decode("shardId-1", streamRecord(types.OperationTypeModify, item("v", s("1"), "w", s("x")), item("v", s("2"), "w", s("x"))))
	if err != nil {
		t.Fatal(err)
	}
	if r.Op != record.OpUpdate || string(r.Key) != `{"pk":"a","sk":2}` || string(r.Before) != `{"pk":"a","sk":2,"v":"1","w":"x"}` ||
		strings.Join(r.Changed, ",") != "v" || r.Tx.Position != "shardId-1/4900000000000000000001" || r.Tx.ID != "ev1" ||
		!r.OccurredAt.Equal(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)) || r.Source.Kind != "dynamodb" || r.Source.Table != "T" || len(r.Actor) != 0 {
		t.Errorf("modify: %+v tx %+v", r, r.Tx)
	}
	if r.ID != record.DeriveID(r) {
		t.Errorf("id %s, want DeriveID's %s", r.ID, record.DeriveID(r))
	}

	alice := `{"actor":{"id":"alice"},"cause":{"type":"t"},"n":"1"}`
	r, _ = d.decode("s", streamRecord(types.OperationTypeModify, item("v", s("1"), "_stele", ctxAttr(alice)), item("v", s("2"), "_stele", ctxAttr(alice))))
	if len(r.Actor) != 0 {
		t.Errorf("an unchanged _stele is the previous writer's; actor %s", r.Actor)
	}
	r, _ = d.decode("s", streamRecord(types.OperationTypeModify, item("v", s("1")), item("v", s("2"), "_stele", ctxAttr(alice))))
	if string(r.Actor) != `{"id":"alice"}` || string(r.Cause) != `{"type":"t"}` || strings.Contains(string(r.After), "_stele") || strings.Join(r.Changed, ",") != "v" {
		t.Errorf("modify with a new _stele: actor %s cause %s after %s changed %v", r.Actor, r.Cause, r.After, r.Changed)
	}
	marker := `{"actor":{"id":"bob"},"op":"delete","n":"2"}`
	r, err = d.decode("s", streamRecord(types.OperationTypeModify, item("v", s("1")), item("v", s("1"), "_stele", ctxAttr(marker))))
	if err != nil || r != nil {
		t.Errorf("a context-only write is not recorded: %+v, %v", r, err)
	}
	r, _ = d.decode("s", streamRecord(types.OperationTypeRemove, item("v", s("1"), "_stele", ctxAttr(marker)), nil))
	if r.Op != record.OpDelete || string(r.Actor) != `{"id":"bob"}` || r.After != nil {
		t.Errorf("delete after a marker: %+v", r)
	}
	r, _ = d.decode("s", streamRecord(types.OperationTypeRemove, item("v", s("1"), "_stele", ctxAttr(alice)), nil))
	if len(r.Actor) != 0 {
		t.Errorf("a delete without a marker carries the item's old writer %s", r.Actor)
	}
	ttl := streamRecord(types.OperationTypeRemove, item("v", s("1")), nil)
	ttl.UserIdentity = &types.Identity{Type: aws.String("Service"), PrincipalId: aws.String("dynamodb.amazonaws.com")}
	r, _ = d.decode("s", ttl)
	if string(r.Actor) != ttlActor || string(r.Cause) != ttlCause {
		t.Errorf("TTL delete: actor %s cause %s", r.Actor, r.Cause)
	}
	local := streamRecord(localTTLEvent, item("v", s("1")), nil)
	if r, err = d.decode("s", local); err != nil || r.Op != record.OpDelete || string(r.Actor) != ttlActor {
		t.Errorf("DynamoDB Local's TTL delete: %+v, %v", r, err)
	}
	if _, err = d.decode("s", streamRecord(localTTLEvent, nil, item("v", s("1")))); err == nil || !strings.Contains(err.Error(), "Time to Live") {
		t.Errorf("an unknown event with a new image: %v", err)
	}
	r, _ = d.decode("s", streamRecord(types.OperationTypeInsert, nil, item("_stele", &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		"actor": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"id": s("m")}}}})))
	if string(r.Actor) != `{"id":"m"}` || r.Before != nil || strings.Join(r.Changed, ",") != "pk,sk" {
		t.Errorf("insert with a map _stele: %+v", r)
	}

	for _, tc := range []struct {
		name  string
		rec   *types.Record
		wants string
	}{
		{"unknown event", streamRecord("UPSERT", nil, item()), `eventName "UPSERT"`},
		{"no old image", streamRecord(types.OperationTypeModify, nil, item()), "MODIFY without OldImage: the stream's view type must be NEW_AND_OLD_IMAGES"},
		{"no new image", streamRecord(types.OperationTypeInsert, nil, nil), "INSERT without NewImage"},
		{"bad number", streamRecord(types.OperationTypeInsert, nil, item("n", &types.AttributeValueMemberN{Value: "secret-x"})), "NewImage: n: a number of 8 characters is not a decimal number"},
		{"no sequence number", &types.Record{EventID: aws.String("e9"), Dynamodb: &types.StreamRecord{}}, "stream record e9 has no dynamodb.SequenceNumber"},
	} {
		_, err := d.decode("shardId-9", tc.rec)
		if err == nil || !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.wants)
		}
	}
	rec := streamRecord(types.OperationTypeInsert, nil, nil)
	rec.Dynamodb.Keys = nil
	if _, err := d.decode("shardId-9", rec); err == nil || !strings.Contains(err.Error(), "Keys is empty") || !strings.Contains(err.Error(), "shard shardId-9") {
		t.Errorf("no keys: %v", err)
	}
}

// TestDecodePartialImages: with AllowPartialImages, an image the stream
// does not carry is a marker saying which and why, and changed is not
// guessed.
func TestDecodePartialImages(t *testing.T) {
	d := decoder{source: "src", table: "T", partial: true}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	rec := streamRecord(types.OperationTypeModify, nil, item("v", s("2")))
	rec.Dynamodb.StreamViewType = types.StreamViewTypeNewImage
	r, err := d.decode("s", rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Before) != `{"$missing_image":{"image":"OldImage","stream_view_type":"NEW_IMAGE"}}` || string(r.After) != `{"pk":"a","sk":2,"v":"2"}` || r.Changed != nil {
		t.Errorf("modify without old image: before %s after %s changed %v", r.Before, r.After, r.Changed)
	}
	rec = streamRecord(types.OperationTypeRemove, nil, nil)
	rec.Dynamodb.StreamViewType = types.StreamViewTypeKeysOnly
	if r, err = d.decode("s", rec); err != nil || string(r.Before) != `{"$missing_image":{"image":"OldImage","stream_view_type":"KEYS_ONLY"}}` || string(r.Key) != `{"pk":"a","sk":2}` {
		t.Errorf("keys-only remove: %+v, %v", r, err)
	}
	if r, err = d.decode("s", streamRecord(types.OperationTypeModify, item("v", s("1")), item("v", s("2")))); err != nil || strings.Join(r.Changed, ",") != "v" {
		t.Errorf("a full record with partial allowed: %+v, %v", r, err)
	}
}

func TestNewConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		wants string
	}{
		{"no tables", Config{StateDir: "x"}, "tables is empty"},
		{"empty table", Config{Tables: []string{"a", " "}, StateDir: "x"}, "tables[1] is empty"},
		{"twice", Config{Tables: []string{"a", "a"}, StateDir: "x"}, `tables[1]: "a" is listed twice`},
		{"bad arn", Config{Tables: []string{"arn:aws:dynamodb:r:1:table/T"}, StateDir: "x"}, "want table/NAME/stream/LABEL"},
		{"bad endpoint", Config{Tables: []string{"a"}, StateDir: "x", Endpoint: "localhost"}, `endpoint "localhost"`},
		{"no state dir", Config{Tables: []string{"a"}}, "state_dir is empty"},
	} {
		_, err := New(tc.cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("%s: New = %v, want ErrConfig saying %q", tc.name, err, tc.wants)
		}
	}
	s, err := New(Config{Tables: []string{"arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/L"}, StateDir: "x"})
	if err != nil || s.Name() != "Orders" || s.Config().PollMax != 2*time.Second || s.Config().PageLimit != 1000 {
		t.Errorf("defaults: %v %+v", err, s.Config())
	}
}

func TestShardPos(t *testing.T) {
	for _, s := range []string{"open 123", "closed 4", "done 5", "done ", "gone "} {
		p, err := parseShardPos(s)
		if err != nil || p.String() != s {
			t.Errorf("parseShardPos(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "opened 1", "open x1"} {
		if _, err := parseShardPos(s); err == nil {
			t.Errorf("parseShardPos(%q): no error", s)
		}
	}
}

// TestObjectIsCanonical: the JSON appendMap writes is record.Canonical's
// byte for byte, and changedFields is record.ChangedFields, on the fast
// path (names sorted the same in UTF-8 and UTF-16) and off it (names
// with characters that sort differently).
func TestObjectIsCanonical(t *testing.T) {
	typed := map[string]types.AttributeValue{
		"id": &types.AttributeValueMemberN{Value: "1"}, "s": &types.AttributeValueMemberS{Value: "héllo \"q\"\n\u2028"},
		"b": &types.AttributeValueMemberB{Value: []byte{0xde, 0xad}}, "nul": &types.AttributeValueMemberNULL{Value: true},
		"m":  &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"zé": &types.AttributeValueMemberBOOL{Value: true}, "a": &types.AttributeValueMemberL{}}},
		"ns": &types.AttributeValueMemberNS{Value: []string{"3", "-1"}}, "ss": &types.AttributeValueMemberSS{Value: []string{"b", "a"}},
	}
	items := []map[string]types.AttributeValue{
		typed,
		{"\U0001F600": &types.AttributeValueMemberS{Value: "emoji"}, "\uE000": &types.AttributeValueMemberS{Value: "private use"}, "a": &types.AttributeValueMemberN{Value: "1"}},
		{"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"\U0001F600": &types.AttributeValueMemberN{Value: "1"}, "\uFB01": &types.AttributeValueMemberN{Value: "2"}}}},
	}
	d := decoder{}
	for i, m := range items {
		img, err := d.object(m, "")
		if err != nil {
			t.Fatal(err)
		}
		want, err := record.Canonical(img.js)
		if err != nil {
			t.Fatal(err)
		}
		if string(img.js) != string(want) {
			t.Errorf("item %d:\n got %s\nwant %s", i, img.js, want)
		}
		other, err := d.object(map[string]types.AttributeValue{"a": &types.AttributeValueMemberN{Value: "2"}, "\uE000": &types.AttributeValueMemberS{Value: "private use"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		wantChanged, err := record.ChangedFields(img.js, other.js)
		if err != nil {
			t.Fatal(err)
		}
		if got := changedFields(img, other); !slices.Equal(got, wantChanged) {
			t.Errorf("item %d: changed %v, want %v", i, got, wantChanged)
		}
	}
}

// FuzzNumber: a number DynamoDB could send either maps to JSON text of
// exactly its value, or is refused with an error; never to other digits.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "+1", ".5", "1.", "007.50", "1E+130", "-1e-5", "12345678901234567890.123456789012345678", "x", "", "--1", "1e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, n string) {
		out, err := appendNumber(nil, n)
		if err != nil || hugeExponent(n) {
			return // big.Rat below would take forever on 1e999999999
		}
		if !validJSONNumber(string(out)) || !json.Valid(out) {
			t.Fatalf("%q -> %q is not a JSON number", n, out)
		}
		in, ok1 := new(big.Rat).SetString(n)
		got, ok2 := new(big.Rat).SetString(string(out))
		if !ok1 || !ok2 || in.Cmp(got) != 0 {
			t.Fatalf("%q -> %q changed its value", n, out)
		}
	})
}
