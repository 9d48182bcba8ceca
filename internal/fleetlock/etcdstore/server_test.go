package etcdstore

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdtest"
)

// testServer runs a Server on c's etcd with groups, over HTTP on loopback.
func testServer(t *testing.T, c *etcdtest.Cluster, groups map[string]uint64) (*httptest.Server, *Store) {
	t.Helper()
	st := New(c.Client(t), Options{Groups: groups})
	srv := httptest.NewServer(fleetlock.NewServer(st, fleetlock.ServerOptions{Metrics: true}).Handler())
	t.Cleanup(srv.Close)
	return srv, st
}

// post sends a FleetLock request; header false leaves the protocol header out.
func srvPost(t *testing.T, url string, header bool, body string) (int, fleetlock.Error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if header {
		req.Header.Set(fleetlock.HeaderName, "true")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e fleetlock.Error
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("POST %s: %d with a non-JSON body %q", url, resp.StatusCode, b)
		}
	} else if len(b) != 0 {
		t.Errorf("POST %s: 200 with a body %q", url, b)
	}
	return resp.StatusCode, e
}

func reqBody(id, group string) string {
	b, _ := json.Marshal(fleetlock.Request{ClientParams: fleetlock.ClientParams{ID: id, Group: group}})
	return string(b)
}

func TestServerProtocol(t *testing.T) {
	c := etcdtest.Start(t, 3)
	srv, _ := testServer(t, c, map[string]uint64{"default": 2, "workers": 1})
	pre, steady := srv.URL+fleetlock.PreRebootPath, srv.URL+fleetlock.SteadyStatePath
	for _, tc := range []struct {
		name       string
		url        string
		header     bool
		body       string
		status     int
		kind       string
		wantInBody string
	}{
		{"lock", pre, true, reqBody("a", "default"), 200, "", ""},
		{"recursive lock", pre, true, reqBody("a", "default"), 200, "", ""},
		{"second slot, trailing slash", pre + "/", true, reqBody("b", "default"), 200, "", ""},
		{"full group", pre, true, reqBody("c", "default"), 500, fleetlock.KindFailedLock, "all 2 semaphore slots currently locked"},
		{"unlock not held", steady, true, reqBody("c", "default"), 200, "", ""},
		{"unlock", steady, true, reqBody("a", "default"), 200, "", ""},
		{"unlock again", steady + "/", true, reqBody("a", "default"), 200, "", ""},
		{"now free", pre, true, reqBody("c", "default"), 200, "", ""},
		{"base URL with a trailing slash", srv.URL + "/" + fleetlock.PreRebootPath, true, reqBody("w1", "workers"), 200, "", ""},
		{"other group full", pre, true, reqBody("w2", "workers"), 500, fleetlock.KindFailedLock, "all 1 semaphore slots currently locked"},
		{"missing header", pre, false, reqBody("a", "default"), 400, fleetlock.KindInvalidClientIdentity, fleetlock.HeaderName},
		{"missing header on unlock", steady, false, reqBody("a", "default"), 400, fleetlock.KindInvalidClientIdentity, fleetlock.HeaderName},
		{"bad body", pre, true, `{"client_params":`, 400, fleetlock.KindInvalidClientIdentity, "body"},
		{"empty body", steady, true, ``, 400, fleetlock.KindInvalidClientIdentity, "body"},
		{"empty id", pre, true, reqBody("", "default"), 400, fleetlock.KindInvalidClientIdentity, "empty client id"},
		{"empty group", pre, true, reqBody("a", ""), 400, fleetlock.KindInvalidClientIdentity, "empty client group"},
		{"bad group", pre, true, reqBody("a", "a/b"), 400, fleetlock.KindInvalidClientIdentity, `"a/b"`},
		{"unknown group", pre, true, reqBody("a", "nope"), 400, fleetlock.KindUnknownGroup, `unknown group "nope"`},
		{"unknown group on unlock", steady, true, reqBody("a", "nope"), 400, fleetlock.KindUnknownGroup, "nope"},
	} {
		status, e := srvPost(t, tc.url, tc.header, tc.body)
		if status != tc.status || e.Kind != tc.kind || !strings.Contains(e.Value, tc.wantInBody) {
			t.Errorf("%s: %d %+v, want %d %s containing %q", tc.name, status, e, tc.status, tc.kind, tc.wantInBody)
		}
	}

	// A full group's value is the reference server's, word for word.
	if _, e := srvPost(t, pre, true, reqBody("z", "default")); e.Value != "all 2 semaphore slots currently locked" {
		t.Errorf("full group's value %q", e.Value)
	}

	// GET instead of POST, and the other endpoints.
	for _, p := range []string{fleetlock.PreRebootPath, fleetlock.SteadyStatePath, fleetlock.PreRebootPath + "/"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		var e fleetlock.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 405 || e.Kind != fleetlock.KindGeneric || resp.Header.Get("Allow") != "POST" {
			t.Errorf("GET %s: %d %+v", p, resp.StatusCode, e)
		}
	}
	if status, e := srvPost(t, srv.URL+"/v1/nothing", true, reqBody("a", "default")); status != 404 || e.Kind != fleetlock.KindGeneric {
		t.Errorf("unknown path: %d %+v", status, e)
	}
	if status, _ := srvPost(t, srv.URL+fleetlock.GroupsPath, true, ""); status != 405 {
		t.Errorf("POST /v1/groups: %d", status)
	}
	var groups fleetlock.GroupsResponse
	srvGetJSON(t, srv.URL+fleetlock.GroupsPath+"/", &groups)
	if len(groups.Groups) != 2 || groups.Groups[0].Name != "default" || groups.Groups[0].Slots != 2 ||
		len(groups.Groups[0].Holders) != 2 || groups.Groups[0].Holders[0].ID != "b" ||
		time.Since(groups.Groups[0].Holders[0].Since) > time.Minute || groups.Groups[1].Holders[0].ID != "w1" {
		t.Errorf("groups %+v", groups)
	}
	if got := rawGet(t, c, SemaphoreKey("default")); got != `{"total_slots":2,"holders":["b","c"]}` {
		t.Errorf("raw semaphore %s", got)
	}
	metrics := srvGetText(t, srv.URL+"/metrics", 200)
	for _, want := range []string{
		`fleetlock_requests_total{endpoint="pre-reboot",result="ok"} 5`,
		`fleetlock_requests_total{endpoint="pre-reboot",result="failed_lock"} 3`,
		`fleetlock_requests_total{endpoint="steady-state",result="unknown_group"} 1`,
		`airlock_database_semaphore_slots{group="workers"} 1`,
		`airlock_database_semaphore_lock_holders{group="default"} 2`,
		`airlock_config_semaphore_slots{group="default"} 2`,
		"fleetlock_etcd_up 1",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if got := srvGetText(t, srv.URL+"/healthz", 200); got != "ok\n" {
		t.Errorf("healthz %q", got)
	}
}

func srvGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(srvGetText(t, url, 200)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func srvGetText(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	io.Copy(&b, resp.Body)
	if resp.StatusCode != status {
		t.Errorf("GET %s: %d, want %d: %s", url, resp.StatusCode, status, b.String())
	}
	return b.String()
}

// TestServerHealthzDown: with its etcd gone, /healthz answers 503 and requests fail
// with the protocol's JSON error.
func TestServerHealthzDown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	st := New(c.Client(t), Options{Groups: map[string]uint64{"default": 1}})
	srv := httptest.NewServer(fleetlock.NewServer(st, fleetlock.ServerOptions{Timeout: 500 * time.Millisecond}).Handler())
	defer srv.Close()
	srvGetText(t, srv.URL+"/healthz", 200)
	c.Members[0].Kill()
	srvGetText(t, srv.URL+"/healthz", 503)
	if status, e := srvPost(t, srv.URL+fleetlock.PreRebootPath, true, reqBody("a", "default")); status != 500 || e.Kind != fleetlock.KindFailedSemInit {
		t.Errorf("lock without etcd: %d %+v", status, e)
	}
	srvGetText(t, srv.URL+"/metrics", 404) // metrics disabled
}
