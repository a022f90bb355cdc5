package openapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const petDoc = `{
  "openapi": "3.1.0",
  "info": {"title": "pets", "version": "1"},
  "security": [{"key": []}],
  "paths": {
    "/pets/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {
        "operationId": "getPet",
        "responses": {
          "200": {"description": "a pet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
          "4XX": {"$ref": "#/components/responses/Error"}
        }
      },
      "put": {
        "operationId": "putPet",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
        "responses": {"204": {"description": "stored"}}
      }
    },
    "/pets/mine": {
      "get": {"operationId": "mine", "security": [], "responses": {"200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
    }
  },
  "components": {
    "securitySchemes": {"key": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Pet": {"type": "object", "required": ["name", "born"], "additionalProperties": false, "properties": {
        "name": {"type": "string"}, "born": {"type": "string", "format": "date-time"}, "legs": {"type": ["integer", "null"]}}},
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    },
    "responses": {
      "Error": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Allow": {"description": "wrong method", "headers": {"Allow": {"required": true, "schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "x-unrouted-responses": {"405": {"$ref": "#/components/responses/Allow"}}
}`

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

func TestCheck(t *testing.T) {
	d, err := Load([]byte(petDoc))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Operations(), ","); got != "GET /pets/mine,GET /pets/{id},PUT /pets/{id}" {
		t.Fatalf("operations %s", got)
	}
	if d.Route("GET", "/pets/mine") != "GET /pets/mine" || d.Route("GET", "/pets/rex") != "GET /pets/{id}" || d.Route("GET", "/pets/") != "" || d.Route("GET", "/pets/a/b") != "" {
		t.Fatal("routing")
	}
	pet := `{"name": "rex", "born": "2020-01-02T03:04:05Z", "legs": null}`
	for _, tc := range []struct {
		name string
		x    Exchange
		err  string // "" when valid
	}{
		{"valid", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(pet)}, ""},
		{"HEAD is GET without a body", Exchange{Method: "HEAD", Path: "/pets/rex", Status: 200, Header: jsonHeader()}, ""},
		{"a status range", Exchange{Method: "GET", Path: "/pets/rex", Status: 404, Header: jsonHeader(), Body: []byte(`{"error": "no"}`)}, ""},
		{"undocumented status", Exchange{Method: "GET", Path: "/pets/rex", Status: 500, Header: jsonHeader(), Body: []byte(`{"error": "no"}`)}, "status 500 is not documented for GET /pets/{id}"},
		{"missing field", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(`{"name": "rex"}`)}, "born"},
		{"wrong type", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(strings.Replace(pet, "null", `"four"`, 1))}, "legs"},
		{"extra field", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(strings.Replace(pet, "{", `{"color": "red", `, 1))}, "color"},
		{"bad date-time", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(strings.Replace(pet, "2020-01-02T03:04:05Z", "yesterday", 1))}, "date-time"},
		{"not JSON", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: jsonHeader(), Body: []byte(`{"name":`)}, "not JSON"},
		{"wrong content type", Exchange{Method: "GET", Path: "/pets/rex", Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte(pet)}, "text/html is not documented"},
		{"text", Exchange{Method: "GET", Path: "/pets/mine", Status: 200, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte("hi")}, ""},
		{"a body where none is documented", Exchange{Method: "PUT", Path: "/pets/rex", RequestBody: []byte(pet), Status: 204, Body: []byte("x")}, "a body where"},
		{"request body taken", Exchange{Method: "PUT", Path: "/pets/rex", RequestHeader: jsonHeader(), RequestBody: []byte(pet), Status: 204}, ""},
		{"request body the document refuses", Exchange{Method: "PUT", Path: "/pets/rex", RequestHeader: jsonHeader(), RequestBody: []byte(`{"name": 1}`), Status: 204}, "document refuses"},
		{"unrouted", Exchange{Method: "DELETE", Path: "/pets/rex", Status: 405, Header: http.Header{"Content-Type": {"application/json"}, "Allow": {"GET, PUT"}}, Body: []byte(`{"error": "no"}`)}, ""},
		{"unrouted without its header", Exchange{Method: "DELETE", Path: "/pets/rex", Status: 405, Header: jsonHeader(), Body: []byte(`{"error": "no"}`)}, "no Allow header"},
		{"unrouted status not documented", Exchange{Method: "GET", Path: "/cats", Status: 404, Header: jsonHeader(), Body: []byte(`{"error": "no"}`)}, "not documented for unrouted GET /cats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Check(tc.x)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case tc.err != "" && err == nil:
				t.Fatalf("passed, want an error with %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("%v\nlacks %q", err, tc.err)
			}
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct{ name, old, new, err string }{
		{"version", `"3.1.0"`, `"3.0.3"`, "want 3.1.x"},
		{"dangling $ref", `"#/components/schemas/Error"}}}}`, `"#/components/schemas/Nope"}}}}`, "Nope"},
		{"undeclared path parameter", `"/pets/mine"`, `"/pets/{owner}/mine"`, `"owner" is not declared`},
		{"no responses", `"responses": {"204": {"description": "stored"}}`, `"responses": {}`, "no responses"},
		{"response without description", `{"description": "stored"}`, `{}`, "no description"},
		{"bad schema", `"legs": {"type": ["integer", "null"]}`, `"legs": {"type": "int"}`, "legs"},
		{"unknown security scheme", `"security": [{"key": []}]`, `"security": [{"token": []}]`, `"token" is not declared`},
		{"duplicate operationId", `"operationId": "mine"`, `"operationId": "getPet"`, "getPet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(petDoc, tc.old) {
				t.Fatalf("the document lacks %s", tc.old)
			}
			_, err := Load([]byte(strings.Replace(petDoc, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Load: %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestTransport(t *testing.T) {
	d, err := Load([]byte(petDoc))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name": "rex"}`))
	}))
	defer srv.Close()
	var reported []error
	c := &http.Client{Transport: &Transport{Doc: d, Report: func(err error) { reported = append(reported, err) }}}
	resp, err := c.Get(srv.URL + "/pets/rex")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil || b.String() != `{"name": "rex"}` {
		t.Fatalf("the body did not pass through: %q %v", b.String(), err)
	}
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "born") {
		t.Fatalf("reported %v", reported)
	}
}
