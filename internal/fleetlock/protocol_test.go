package fleetlock

import (
	"encoding/json"
	"testing"
)

func TestProtocolShapes(t *testing.T) {
	b, err := json.Marshal(Request{ClientParams: ClientParams{ID: "n1", Group: "workers"}})
	if err != nil || string(b) != `{"client_params":{"id":"n1","group":"workers"}}` {
		t.Errorf("request %s %v", b, err)
	}
	b, _ = json.Marshal(&Error{Kind: KindFailedLock, Value: "all 2 slots are taken", Status: 500})
	if string(b) != `{"kind":"failed_lock","value":"all 2 slots are taken"}` {
		t.Errorf("error body %s", b)
	}
	for g, ok := range map[string]bool{"default": true, "rack-1.workers": true, "": false, "a b": false, "a/b": false, "ü": false} {
		if ValidGroup(g) != ok {
			t.Errorf("ValidGroup(%q) = %v", g, !ok)
		}
	}
}
