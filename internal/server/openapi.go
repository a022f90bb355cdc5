package server

import (
	_ "embed"
	"net/http"
)

// openapiDoc is the OpenAPI 3.1 description of every route, served at
// GET /api/openapi.json. It is written by hand; TestOpenAPIRoutes holds it
// to the routes the server registers, and every response the tests get
// (unit and integration) is checked against it.
//
//go:embed openapi.json
var openapiDoc []byte

// OpenAPI returns the OpenAPI document the server serves.
func OpenAPI() []byte { return append([]byte(nil), openapiDoc...) }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(openapiDoc) // a client gone away is not an error of ours
	return nil
}
