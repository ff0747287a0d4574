package sqlphase

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestErrorsAreClassified(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	src := toySource(t)

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		p := newPhase(t, "postgres://u:secret@"+addr+"/db?sslmode=disable", src, Options{ConnectTimeout: 2 * time.Second})
		lines, err := p.Status(ctx)
		wantCode(t, err, report.CodeUnreachable)
		if states(lines) != "1:unknown 2:unknown 3:unknown" || strings.Contains(err.Error(), "secret") {
			t.Errorf("lines %s, err %v", states(lines), err)
		}
		validLines(t, report.KindStatus, "status", "", lines, err)
		_, err = p.Apply(ctx, &batch.Run{})
		wantCode(t, err, report.CodeUnreachable)
	})
	t.Run("wrong password", func(t *testing.T) {
		db.CreateRole(t, "sqlphase_pw", "right")
		p := newPhase(t, db.URLFor("sqlphase_pw", "wrong"), src, Options{})
		_, err := p.Status(ctx)
		wantCode(t, err, report.CodePermission)
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error shows the password: %v", err)
		}
	})
	t.Run("no privilege", func(t *testing.T) {
		url := db.CreateRole(t, "sqlphase_ro", "pw")
		exec(t, db.Connect(t), `REVOKE CREATE ON SCHEMA public FROM sqlphase_ro`)
		p := newPhase(t, url, src, Options{})
		_, err := p.Apply(ctx, &batch.Run{})
		wantCode(t, err, report.CodePermission)
	})
	t.Run("bad url", func(t *testing.T) {
		_, err := New(ctx, "postgres://u:topsecret@host:notaport/db", src, Options{})
		wantCode(t, err, report.CodeConfig)
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("error shows the password: %v", err)
		}
		_, err = New(ctx, "", src, Options{})
		wantCode(t, err, report.CodeConfig)
	})
	t.Run("no database", func(t *testing.T) {
		url := strings.Replace(db.URL, "/"+db.Name+"?", "/"+db.Name+"_missing?", 1)
		p := newPhase(t, url, src, Options{})
		_, err := p.Status(ctx)
		wantCode(t, err, report.CodeConfig)
	})
}

func TestUpToDateNeedsNoCreatePrivilege(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	admin := newPhase(t, db.URL, toySource(t), Options{})
	if _, err := admin.Apply(ctx, &batch.Run{ID: "r"}); err != nil {
		t.Fatal(err)
	}
	url := db.CreateRole(t, "sqlphase_reader", "pw")
	exec(t, db.Connect(t), `REVOKE CREATE ON SCHEMA public FROM sqlphase_reader`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA public TO sqlphase_reader`)
	p := newPhase(t, url, toySource(t), Options{})
	lines, err := p.Apply(ctx, &batch.Run{ID: "r2"})
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" {
		t.Fatalf("apply on an up-to-date database without CREATE = %s, %v", states(lines), err)
	}
	if _, err := p.Verify(ctx, &batch.Run{}); err != nil {
		t.Fatalf("verify as a reader: %v", err)
	}
}
