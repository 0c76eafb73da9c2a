package dynamoctx

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestItemAndUpdate(t *testing.T) {
	c := Context{Actor: map[string]string{"id": "alice"}, Cause: map[string]string{"type": "ticket"}}
	in := map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "1"}}
	out := c.Item(in)
	if _, ok := in[Attribute]; ok {
		t.Error("Item changed its input")
	}
	m, ok := out[Attribute].(*types.AttributeValueMemberM)
	if !ok || m.Value["actor"] == nil || m.Value["cause"] == nil || m.Value["n"] == nil || m.Value["op"] != nil {
		t.Fatalf("context attribute %#v", out[Attribute])
	}
	// Two writes by the same actor differ, so the second is seen as new.
	if n2 := c.Value().(*types.AttributeValueMemberM).Value["n"].(*types.AttributeValueMemberS).Value; n2 == m.Value["n"].(*types.AttributeValueMemberS).Value {
		t.Error("two context values share their nonce")
	}
	for _, tc := range []struct{ in, want string }{
		{"", "SET #stele = :stele"},
		{"SET v = :v", "SET #stele = :stele, v = :v"},
		{"REMOVE w", "SET #stele = :stele REMOVE w"},
	} {
		expr, names, values, err := c.Update(tc.in, nil, nil)
		if err != nil || expr != tc.want || names["#stele"] != Attribute || values[":stele"] == nil {
			t.Errorf("Update(%q) = %q, %v, %v, %v", tc.in, expr, names, values, err)
		}
	}
	if _, _, _, err := c.Update("SET #stele = :x", map[string]string{"#stele": "x"}, nil); err == nil || !strings.Contains(err.Error(), "#stele is already used") {
		t.Errorf("a clashing name: %v", err)
	}
	if _, _, _, err := c.Update("", nil, map[string]types.AttributeValue{":stele": &types.AttributeValueMemberS{}}); err == nil || !strings.Contains(err.Error(), ":stele is already used") {
		t.Errorf("a clashing value: %v", err)
	}
	expr, _, values := c.MarkDelete()
	if expr != "SET #stele = :stele" || values[":stele"].(*types.AttributeValueMemberM).Value["op"].(*types.AttributeValueMemberS).Value != OpDelete {
		t.Errorf("MarkDelete = %q %#v", expr, values)
	}
}
