package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/shirath/shirath/internal/verify"
)

// verifyMV compares the MV's target with its query over the whole source
// (see package verify) and records the outcome with its job. The answer is
// 200 whether or not the target matches: the report's ok says which; 409
// when the MV cannot be verified yet (no job, backfill not completed, an
// engine verify does not merge), 503 when ClickHouse could not be asked.
func (s *Server) verifyMV(w http.ResponseWriter, r *http.Request) error {
	db, name, err := s.keyOf(r)
	if err != nil {
		return err
	}
	key := Key(db, name)
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	job, err := getJob(ctx, s.store, db, name)
	if err != nil {
		return err
	}
	if job == nil {
		if _, ok, err := s.desiredOne(ctx, db, name); err != nil {
			return err
		} else if ok {
			return apiErr(http.StatusConflict, "MV "+key+" has no job yet", "verify compares a target once its backfill has completed")
		}
		return notFound(key)
	}
	conn := s.cfg.Connect()
	defer conn.Close()
	v := &verify.Verifier{Conn: conn, Log: s.log.Named("verify")}
	rep, err := v.VerifyJob(ctx, s.store, job)
	if errors.Is(err, verify.ErrNotVerifiable) {
		return apiErr(http.StatusConflict, "MV "+key+" cannot be verified", err.Error())
	}
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "verify "+key+": "+err.Error())
	}
	s.log.Named("api").Info("verified", "mv", key, "ok", rep.OK, "differences", rep.Count())
	view, err := s.view(ctx, db, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"report": rep, "job": view})
	return nil
}
