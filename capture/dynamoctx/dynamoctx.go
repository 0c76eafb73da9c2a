// Package dynamoctx lets a Go application tell Stele who made a change to
// a DynamoDB item, and why. DynamoDB has no transaction or session context
// that reaches its stream, so the context travels on the item itself, in
// one attribute, _stele:
//
//	_stele = {"actor": {"id": "alice", "app": "crm"}, "cause": {"type": "ticket", "id": "T-42"}, "n": "<random>"}
//
// as a map (M) attribute, or as a string (S) holding that JSON. Stele's
// dynamodb source moves it out of the images into the record's actor and
// cause, and never shows _stele in before, after or changed:
//
//   - an INSERT or MODIFY carries the actor when its new image's _stele
//     differs from the old image's; an unchanged _stele is the previous
//     writer's, left behind by an UpdateItem that did not touch it, and is
//     ignored. "n", a fresh random value per write, makes two writes by the
//     same actor differ;
//   - a REMOVE has no new image, so a delete is told in two steps:
//     an UpdateItem that sets _stele with "op": "delete" (MarkDelete), then
//     the DeleteItem. The update changes nothing but _stele and is not
//     recorded; the REMOVE carries the actor of the old image's marker;
//   - a MODIFY whose only change is _stele is never recorded.
//
// Item, Update and MarkDelete build the attribute for PutItem (and
// TransactWriteItems' Put), UpdateItem (and Update in TransactWriteItems)
// and the delete marker. Other languages write the same attribute.
package dynamoctx

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute is the name of the context attribute.
const Attribute = "_stele"

// OpDelete is the value of "op" in a delete marker.
const OpDelete = "delete"

// Context is who made a change and why. Actor members Stele knows are id,
// type, app, ip and request_id; Cause is free-form. Values are strings.
type Context struct {
	Actor map[string]string
	Cause map[string]string
}

// Value is the _stele attribute value for one write.
func (c Context) Value() types.AttributeValue { return c.value("") }

func (c Context) value(op string) types.AttributeValue {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	m := map[string]types.AttributeValue{"n": &types.AttributeValueMemberS{Value: hex.EncodeToString(nonce[:])}}
	if len(c.Actor) > 0 {
		m["actor"] = stringMap(c.Actor)
	}
	if len(c.Cause) > 0 {
		m["cause"] = stringMap(c.Cause)
	}
	if op != "" {
		m["op"] = &types.AttributeValueMemberS{Value: op}
	}
	return &types.AttributeValueMemberM{Value: m}
}

func stringMap(in map[string]string) types.AttributeValue {
	m := make(map[string]types.AttributeValue, len(in))
	for _, k := range slices.Sorted(maps.Keys(in)) {
		m[k] = &types.AttributeValueMemberS{Value: in[k]}
	}
	return &types.AttributeValueMemberM{Value: m}
}

// Item returns a copy of item with the context attribute set, for PutItem
// or a Put of TransactWriteItems.
func (c Context) Item(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	out := maps.Clone(item)
	if out == nil {
		out = map[string]types.AttributeValue{}
	}
	out[Attribute] = c.Value()
	return out
}

// Update adds the context to an UpdateItem (or an Update of
// TransactWriteItems): it returns the update expression with
// "SET #stele = :stele" added, and the names and values maps with their
// entries added (copies; nil inputs are fine). expr may be empty or start
// with SET, REMOVE, ADD or DELETE clauses.
func (c Context) Update(expr string, names map[string]string, values map[string]types.AttributeValue) (string, map[string]string, map[string]types.AttributeValue, error) {
	return c.update(expr, names, values, "")
}

// MarkDelete is the UpdateItem that must precede a DeleteItem of the item
// for the REMOVE to carry this context: its update expression, names and
// values. Run it with the DeleteItem's key (and condition, if any).
func (c Context) MarkDelete() (string, map[string]string, map[string]types.AttributeValue) {
	expr, names, values, _ := c.update("", nil, nil, OpDelete)
	return expr, names, values
}

func (c Context) update(expr string, names map[string]string, values map[string]types.AttributeValue, op string) (string, map[string]string, map[string]types.AttributeValue, error) {
	names, values = maps.Clone(names), maps.Clone(values)
	if names == nil {
		names = map[string]string{}
	}
	if values == nil {
		values = map[string]types.AttributeValue{}
	}
	if _, ok := names["#stele"]; ok {
		return "", nil, nil, fmt.Errorf("dynamoctx: expression attribute name #stele is already used")
	}
	if _, ok := values[":stele"]; ok {
		return "", nil, nil, fmt.Errorf("dynamoctx: expression attribute value :stele is already used")
	}
	names["#stele"] = Attribute
	values[":stele"] = c.value(op)
	set := "#stele = :stele"
	switch {
	case expr == "":
		expr = "SET " + set
	case len(expr) >= 4 && (expr[:4] == "SET " || expr[:4] == "set "):
		expr = "SET " + set + ", " + expr[4:]
	default:
		expr = "SET " + set + " " + expr
	}
	return expr, names, values, nil
}
