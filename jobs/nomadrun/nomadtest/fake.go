// Package nomadtest is an in-memory Nomad for tests of `outpost jobs nomad
// run`: an httptest server that speaks the part of the Nomad HTTP API the
// runner (package nomadrun) uses — register, dispatch, job, job allocations,
// allocation, client logs (JSON stream frames and plain) and cat — with
// blocking queries (?index=&wait=) and the X-Nomad-Index,
// X-Nomad-LastContact and X-Nomad-KnownLeader headers.
//
// Nothing is scheduled by itself: a Scenario, started in its own goroutine
// for every registered (not parameterized) or dispatched job, drives the
// allocation's life as a Nomad client would (Place, Start, WriteLog, Exit,
// Update). Exit, DriverFailure, LostAlloc and Forever are canned scenarios;
// Exec runs the task through a function, so a test can run the real tool
// in-process and have its report relayed.
//
// It is test support, not test code, so that the nomadrun tests and the
// command's tests (cmd/outpost) share one fake. All methods are safe for
// concurrent use.
package nomadtest

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Scenario drives one started job (a registered batch job or a dispatched
// child). It runs in its own goroutine and receives a copy of the job.
type Scenario func(s *Server, j *api.Job)

// Server is the fake Nomad. It stops when the test that made it ends.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	index    uint64
	notify   chan struct{}
	jobs     map[string]*api.Job
	allocs   map[string]*api.Allocation
	logs     map[string][]byte // "<alloc>/<task>.<stdout|stderr>"
	seq      int
	requests []string

	token      string // when set, requests need it (else 403)
	scenario   Scenario
	failInfo   int // answer this many job reads with 500
	registered []*api.Job
	dispatches []api.JobDispatchRequest
}

// New starts a fake Nomad over HTTP that runs scenario for every started
// job (nil: jobs are never placed).
func New(t testing.TB, scenario Scenario) *Server {
	s := &Server{
		t: t, index: 10, notify: make(chan struct{}),
		jobs: map[string]*api.Job{}, allocs: map[string]*api.Allocation{}, logs: map[string][]byte{},
		scenario: scenario,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// NewTLS is New over HTTPS, with httptest's self-signed certificate (see
// Certificate).
func NewTLS(t testing.TB, scenario Scenario) *Server {
	s := New(t, scenario)
	s.srv.Close()
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the server's address, for NOMAD_ADDR or --addr.
func (s *Server) URL() string { return s.srv.URL }

// Certificate is the TLS server's certificate (NewTLS only).
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// RequireToken makes every request without X-Nomad-Token: token fail with
// 403 and Nomad's "Permission denied".
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// FailJobReads answers the next n job reads with 500 "No cluster leader".
func (s *Server) FailJobReads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failInfo = n
}

// Registered returns copies of the jobs registered so far, in order.
func (s *Server) Registered() []*api.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*api.Job, len(s.registered))
	for i, j := range s.registered {
		out[i] = copyJob(j)
	}
	return out
}

// Dispatches returns the dispatch requests received so far, in order.
func (s *Server) Dispatches() []api.JobDispatchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dispatches)
}

// RequestLog is every request so far, "METHOD URI", one a line.
func (s *Server) RequestLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.requests, "\n")
}

// SawBlockingQuery reports whether a job was read with a blocking query.
func (s *Server) SawBlockingQuery() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.requests {
		if strings.HasPrefix(r, "GET /v1/job/") && strings.Contains(r, "index=") && !strings.Contains(r, "index=0") {
			return true
		}
	}
	return false
}

// bump records a change; the caller holds mu.
func (s *Server) bump() uint64 {
	s.index++
	close(s.notify)
	s.notify = make(chan struct{})
	return s.index
}

func (s *Server) id(prefix string) string {
	s.seq++
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", s.seq, len(prefix), s.seq)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	token := s.token
	s.mu.Unlock()
	if token != "" && r.Header.Get("X-Nomad-Token") != token {
		http.Error(w, api.PermissionDeniedErrorContent, http.StatusForbidden)
		return
	}

	var seg []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/"), "/") {
		u, _ := url.PathUnescape(p)
		seg = append(seg, u)
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case len(seg) == 1 && seg[0] == "jobs" && write:
		s.register(w, r)
	case len(seg) == 3 && seg[0] == "job" && seg[2] == "dispatch" && write:
		s.dispatch(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "job" && r.Method == http.MethodGet:
		s.jobInfo(w, r, seg[1])
	case len(seg) == 3 && seg[0] == "job" && seg[2] == "allocations" && r.Method == http.MethodGet:
		s.jobAllocs(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "allocation" && r.Method == http.MethodGet:
		s.allocInfo(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "node":
		// Nodes are not modelled: the client then reads logs through the server.
		http.Error(w, "node not found", http.StatusNotFound)
	case len(seg) == 4 && seg[0] == "client" && seg[1] == "fs" && seg[2] == "logs":
		s.logsEndpoint(w, r, seg[3])
	case len(seg) == 4 && seg[0] == "client" && seg[1] == "fs" && seg[2] == "cat":
		s.catEndpoint(w, r, seg[3])
	default:
		http.Error(w, "no such endpoint in the fake: "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

// block waits, like a Nomad blocking query, until the index passes ?index=
// or ?wait= runs out.
func (s *Server) block(r *http.Request) {
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if idx == 0 {
		return
	}
	wait := 5 * time.Minute
	if v := r.URL.Query().Get("wait"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			wait = d
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		cur, ch := s.index, s.notify
		s.mu.Unlock()
		if cur > idx {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// reply writes v with the query meta headers; the caller holds mu.
func (s *Server) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
	w.Header().Set("X-Nomad-LastContact", "0")
	w.Header().Set("X-Nomad-KnownLeader", "true")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.t.Errorf("nomadtest: encode: %v", err)
	}
}

func copyJob(j *api.Job) *api.Job {
	b, _ := json.Marshal(j)
	var c api.Job
	_ = json.Unmarshal(b, &c)
	return &c
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req api.JobRegisterRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Job == nil || req.Job.ID == nil {
		http.Error(w, fmt.Sprintf("bad register request: %v", err), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	job := req.Job
	idx := s.bump()
	var version uint64
	if old, ok := s.jobs[*job.ID]; ok {
		version = *old.Version + 1
	}
	status := "pending"
	if job.IsParameterized() {
		status = "running"
	}
	job.Status, job.Version, job.JobModifyIndex, job.ModifyIndex, job.CreateIndex = &status, &version, &idx, &idx, &idx
	s.jobs[*job.ID] = job
	s.registered = append(s.registered, copyJob(job))
	if !job.IsParameterized() && s.scenario != nil {
		go s.scenario(s, copyJob(job))
	}
	s.reply(w, api.JobRegisterResponse{EvalID: s.id("e"), EvalCreateIndex: idx, JobModifyIndex: idx})
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, id string) {
	var req api.JobDispatchRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("bad dispatch request: %v", err), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent, ok := s.jobs[id]
	if !ok {
		http.Error(w, "job not found", http.StatusNotFound)
		return
	}
	if !parent.IsParameterized() {
		http.Error(w, "Specified job is not a parameterized job", http.StatusBadRequest)
		return
	}
	for _, k := range parent.ParameterizedJob.MetaRequired {
		if _, ok := req.Meta[k]; !ok {
			http.Error(w, "Dispatch did not provide required meta keys: ["+k+"]", http.StatusBadRequest)
			return
		}
	}
	s.dispatches = append(s.dispatches, req)
	child := copyJob(parent)
	childID := fmt.Sprintf("%s/dispatch-%d-%08x", id, time.Now().Unix(), s.seq+1)
	s.seq++
	idx := s.bump()
	status := "pending"
	child.ID, child.Name, child.ParentID = &childID, &childID, parent.ID
	child.Dispatched, child.ParameterizedJob, child.Status = true, nil, &status
	child.JobModifyIndex, child.ModifyIndex, child.CreateIndex = &idx, &idx, &idx
	if child.Meta == nil {
		child.Meta = map[string]string{}
	}
	// Dispatch meta overrides the job's meta defaults, as in Nomad.
	for k, v := range req.Meta {
		child.Meta[k] = v
	}
	s.jobs[childID] = child
	if s.scenario != nil {
		go s.scenario(s, copyJob(child))
	}
	s.reply(w, api.JobDispatchResponse{DispatchedJobID: childID, EvalID: s.id("e"), EvalCreateIndex: idx, JobCreateIndex: idx})
}

func (s *Server) jobInfo(w http.ResponseWriter, r *http.Request, id string) {
	s.block(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failInfo > 0 {
		s.failInfo--
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	job, ok := s.jobs[id]
	if !ok {
		http.Error(w, "job not found", http.StatusNotFound)
		return
	}
	s.reply(w, job)
}

func (s *Server) jobAllocs(w http.ResponseWriter, r *http.Request, id string) {
	s.block(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[id]; !ok {
		http.Error(w, "job not found", http.StatusNotFound)
		return
	}
	out := []*api.AllocationListStub{}
	for _, a := range s.allocs {
		if a.JobID != id {
			continue
		}
		out = append(out, &api.AllocationListStub{
			ID: a.ID, EvalID: a.EvalID, Name: a.Name, Namespace: a.Namespace, NodeID: a.NodeID, NodeName: a.NodeName,
			JobID: a.JobID, TaskGroup: a.TaskGroup, DesiredStatus: a.DesiredStatus, ClientStatus: a.ClientStatus,
			ClientDescription: a.ClientDescription, TaskStates: a.TaskStates, CreateIndex: a.CreateIndex, ModifyIndex: a.ModifyIndex,
		})
	}
	s.reply(w, out)
}

func (s *Server) allocInfo(w http.ResponseWriter, r *http.Request, id string) {
	s.block(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.allocs[id]
	if !ok {
		http.Error(w, "alloc not found", http.StatusNotFound)
		return
	}
	s.reply(w, a)
}

// logsEndpoint serves /v1/client/fs/logs/<alloc>: JSON StreamFrames (with a
// heartbeat among them, as Nomad sends), or the raw bytes with plain=true.
func (s *Server) logsEndpoint(w http.ResponseWriter, r *http.Request, allocID string) {
	q := r.URL.Query()
	task, typ := q.Get("task"), q.Get("type")
	if typ != "stdout" && typ != "stderr" {
		http.Error(w, "must provide a valid log type (stdout, stderr)", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	_, ok := s.allocs[allocID]
	data := append([]byte(nil), s.logs[allocID+"/"+task+"."+typ]...)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "Unknown allocation", http.StatusNotFound)
		return
	}
	offset, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
	switch q.Get("origin") {
	case "end":
		if offset < int64(len(data)) {
			data = data[int64(len(data))-offset:]
		}
	default:
		if offset < int64(len(data)) {
			data = data[offset:]
		} else {
			data = nil
		}
	}
	if q.Get("plain") == "true" {
		_, _ = w.Write(data)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	file := "alloc/logs/" + task + "." + typ + ".0"
	_ = enc.Encode(api.StreamFrame{}) // heartbeat
	const chunk = 7                   // small frames: the client must join them
	for i := 0; i < len(data); i += chunk {
		end := min(i+chunk, len(data))
		_ = enc.Encode(api.StreamFrame{Offset: int64(end), Data: data[i:end], File: file})
	}
}

func (s *Server) catEndpoint(w http.ResponseWriter, r *http.Request, allocID string) {
	p := r.URL.Query().Get("path")
	rest, ok := strings.CutPrefix(p, "alloc/logs/")
	name, ok2 := strings.CutSuffix(rest, ".0")
	s.mu.Lock()
	data, found := s.logs[allocID+"/"+name]
	s.mu.Unlock()
	if !ok || !ok2 || !found {
		http.Error(w, "file not found", http.StatusNotFound)
		return
	}
	_, _ = w.Write(data)
}
