package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/state"
)

// MV is a client's reading of one MV of the API (see View for what each
// field means): the job store's view of the job, plus the daemon's fields.
type MV struct {
	// ID is null for a spec not started yet, so it replaces JobView's id; it
	// stands first so that an MV encodes its fields in the API's order.
	ID *int64 `json:"id"`
	state.JobView
	Origin    *string    `json:"origin"`
	Reconcile *Condition `json:"reconcile"`
	// Refresh is set for a refreshable MV the daemon has reconciled.
	Refresh *chclient.RefreshState `json:"refresh,omitempty"`
}

// Key is database.name.
func (m *MV) Key() string { return Key(m.Database, m.Name) }

// Client talks to a running daemon.
type Client struct {
	BaseURL string // http://host:port
	Token   string
	HTTP    *http.Client
}

// Do sends a request and decodes a 2xx JSON answer into out (when not nil).
// Any other answer is returned as an *Error with its status.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		e.Status = resp.StatusCode
		return resp.StatusCode, e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

type jobAnswer struct {
	Job MV `json:"job"`
}

// List returns every MV.
func (c *Client) List(ctx context.Context) ([]MV, error) {
	var a struct {
		Jobs []MV `json:"jobs"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/api/mv", nil, &a)
	return a.Jobs, err
}

// Get returns one MV (name or database.name).
func (c *Client) Get(ctx context.Context, key string) (*MV, error) {
	var a jobAnswer
	if _, err := c.Do(ctx, http.MethodGet, "/api/mv/"+url.PathEscape(key), nil, &a); err != nil {
		return nil, err
	}
	return &a.Job, nil
}

// Create posts a spec document; created is false when the same spec was
// stored already.
func (c *Client) Create(ctx context.Context, spec []byte) (mv *MV, created bool, err error) {
	var a jobAnswer
	status, err := c.Do(ctx, http.MethodPost, "/api/mv", spec, &a)
	if err != nil {
		return nil, false, err
	}
	return &a.Job, status == http.StatusCreated, nil
}

// Backfill starts, resumes or (restart) rebuilds an MV's backfill.
func (c *Client) Backfill(ctx context.Context, key string, restart bool) (*MV, error) {
	var a jobAnswer
	path := "/api/mv/" + url.PathEscape(key) + "/backfill"
	if restart {
		path += "?restart=true"
	}
	if _, err := c.Do(ctx, http.MethodPost, path, nil, &a); err != nil {
		return nil, err
	}
	return &a.Job, nil
}

// Delete drops an MV.
func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/api/mv/"+url.PathEscape(key), nil, nil)
	return err
}
