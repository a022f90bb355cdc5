package openapi

import (
	"bytes"
	"io"
	"net/http"
)

// Transport is an http.RoundTripper that checks every exchange passing
// through it against Doc and hands each failure to Report; the response is
// returned unchanged.
type Transport struct {
	Doc    *Doc
	Base   http.RoundTripper // http.DefaultTransport when nil
	Report func(error)
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		reqBody, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.Doc.Check(Exchange{
		Method: req.Method, Path: req.URL.Path, RequestHeader: req.Header, RequestBody: reqBody,
		Status: resp.StatusCode, Header: resp.Header, Body: body,
	}); err != nil {
		t.Report(err)
	}
	return resp, nil
}
