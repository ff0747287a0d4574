package nomadrun

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// fakeNomad is an httptest server that speaks the part of the Nomad HTTP API
// the runner uses, with blocking queries (?index=&wait=) and the
// X-Nomad-Index, X-Nomad-LastContact and X-Nomad-KnownLeader headers. A
// scenario, started for every registered (not parameterized) or dispatched
// job, drives the allocation's life as a Nomad client would.
type fakeNomad struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	index    uint64
	notify   chan struct{}
	jobs     map[string]*api.Job
	allocs   map[string]*api.Allocation
	logs     map[string][]byte // "<alloc>/<task>.<stdout|stderr>"
	seq      int
	requests []string
	tokens   []string

	token      string                         // when set, requests need it (else 403)
	scenario   func(f *fakeNomad, j *api.Job) // run in a goroutine per started job
	failInfo   int                            // answer this many job reads with 500
	registered []*api.Job
	dispatches []api.JobDispatchRequest
}

func newFake(t *testing.T, scenario func(f *fakeNomad, j *api.Job)) *fakeNomad {
	f := &fakeNomad{
		t: t, index: 10, notify: make(chan struct{}),
		jobs: map[string]*api.Job{}, allocs: map[string]*api.Allocation{}, logs: map[string][]byte{},
		scenario: scenario,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// newFakeTLS is newFake over HTTPS, with httptest's self-signed certificate.
func newFakeTLS(t *testing.T, scenario func(f *fakeNomad, j *api.Job)) *fakeNomad {
	f := newFake(t, scenario)
	f.srv.Close()
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// bump records a change; the caller holds mu.
func (f *fakeNomad) bump() uint64 {
	f.index++
	close(f.notify)
	f.notify = make(chan struct{})
	return f.index
}

func (f *fakeNomad) id(prefix string) string {
	f.seq++
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", f.seq, len(prefix), f.seq)
}

func (f *fakeNomad) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.tokens = append(f.tokens, r.Header.Get("X-Nomad-Token"))
	token := f.token
	f.mu.Unlock()
	if token != "" && r.Header.Get("X-Nomad-Token") != token {
		http.Error(w, api.PermissionDeniedErrorContent, http.StatusForbidden)
		return
	}

	var seg []string
	for _, s := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/"), "/") {
		u, _ := url.PathUnescape(s)
		seg = append(seg, u)
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case len(seg) == 1 && seg[0] == "jobs" && write:
		f.register(w, r)
	case len(seg) == 3 && seg[0] == "job" && seg[2] == "dispatch" && write:
		f.dispatch(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "job" && r.Method == http.MethodGet:
		f.jobInfo(w, r, seg[1])
	case len(seg) == 3 && seg[0] == "job" && seg[2] == "allocations" && r.Method == http.MethodGet:
		f.jobAllocs(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "allocation" && r.Method == http.MethodGet:
		f.allocInfo(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "node":
		// Nodes are not modelled: the client then reads logs through the server.
		http.Error(w, "node not found", http.StatusNotFound)
	case len(seg) == 4 && seg[0] == "client" && seg[1] == "fs" && seg[2] == "logs":
		f.logsEndpoint(w, r, seg[3])
	case len(seg) == 4 && seg[0] == "client" && seg[1] == "fs" && seg[2] == "cat":
		f.catEndpoint(w, r, seg[3])
	default:
		http.Error(w, "no such endpoint in the fake: "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

// block waits, like a Nomad blocking query, until the index passes ?index=
// or ?wait= runs out.
func (f *fakeNomad) block(r *http.Request) {
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
		f.mu.Lock()
		cur, ch := f.index, f.notify
		f.mu.Unlock()
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
func (f *fakeNomad) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(f.index, 10))
	w.Header().Set("X-Nomad-LastContact", "0")
	w.Header().Set("X-Nomad-KnownLeader", "true")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		f.t.Errorf("fake: encode: %v", err)
	}
}

func copyJob(j *api.Job) *api.Job {
	b, _ := json.Marshal(j)
	var c api.Job
	_ = json.Unmarshal(b, &c)
	return &c
}

func (f *fakeNomad) register(w http.ResponseWriter, r *http.Request) {
	var req api.JobRegisterRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Job == nil || req.Job.ID == nil {
		http.Error(w, fmt.Sprintf("bad register request: %v", err), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	job := req.Job
	idx := f.bump()
	var version uint64
	if old, ok := f.jobs[*job.ID]; ok {
		version = *old.Version + 1
	}
	status := "pending"
	if job.IsParameterized() {
		status = "running"
	}
	job.Status, job.Version, job.JobModifyIndex, job.ModifyIndex, job.CreateIndex = &status, &version, &idx, &idx, &idx
	f.jobs[*job.ID] = job
	f.registered = append(f.registered, copyJob(job))
	if !job.IsParameterized() && f.scenario != nil {
		go f.scenario(f, copyJob(job))
	}
	f.reply(w, api.JobRegisterResponse{EvalID: f.id("e"), EvalCreateIndex: idx, JobModifyIndex: idx})
}

func (f *fakeNomad) dispatch(w http.ResponseWriter, r *http.Request, id string) {
	var req api.JobDispatchRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("bad dispatch request: %v", err), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	parent, ok := f.jobs[id]
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
	f.dispatches = append(f.dispatches, req)
	child := copyJob(parent)
	childID := fmt.Sprintf("%s/dispatch-%d-%08x", id, time.Now().Unix(), f.seq+1)
	f.seq++
	idx := f.bump()
	status := "pending"
	child.ID, child.Name, child.ParentID = &childID, &childID, parent.ID
	child.Dispatched, child.ParameterizedJob, child.Status = true, nil, &status
	child.JobModifyIndex, child.ModifyIndex, child.CreateIndex = &idx, &idx, &idx
	if child.Meta == nil {
		child.Meta = map[string]string{}
	}
	for k, v := range req.Meta {
		child.Meta[k] = v
	}
	f.jobs[childID] = child
	if f.scenario != nil {
		go f.scenario(f, copyJob(child))
	}
	f.reply(w, api.JobDispatchResponse{DispatchedJobID: childID, EvalID: f.id("e"), EvalCreateIndex: idx, JobCreateIndex: idx})
}

func (f *fakeNomad) jobInfo(w http.ResponseWriter, r *http.Request, id string) {
	f.block(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failInfo > 0 {
		f.failInfo--
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	job, ok := f.jobs[id]
	if !ok {
		http.Error(w, "job not found", http.StatusNotFound)
		return
	}
	f.reply(w, job)
}

func (f *fakeNomad) jobAllocs(w http.ResponseWriter, r *http.Request, id string) {
	f.block(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.jobs[id]; !ok {
		http.Error(w, "job not found", http.StatusNotFound)
		return
	}
	out := []*api.AllocationListStub{}
	for _, a := range f.allocs {
		if a.JobID != id {
			continue
		}
		out = append(out, &api.AllocationListStub{
			ID: a.ID, EvalID: a.EvalID, Name: a.Name, Namespace: a.Namespace, NodeID: a.NodeID, NodeName: a.NodeName,
			JobID: a.JobID, TaskGroup: a.TaskGroup, DesiredStatus: a.DesiredStatus, ClientStatus: a.ClientStatus,
			ClientDescription: a.ClientDescription, TaskStates: a.TaskStates, CreateIndex: a.CreateIndex, ModifyIndex: a.ModifyIndex,
		})
	}
	f.reply(w, out)
}

func (f *fakeNomad) allocInfo(w http.ResponseWriter, r *http.Request, id string) {
	f.block(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.allocs[id]
	if !ok {
		http.Error(w, "alloc not found", http.StatusNotFound)
		return
	}
	f.reply(w, a)
}

// logsEndpoint serves /v1/client/fs/logs/<alloc>: JSON StreamFrames (with a
// heartbeat among them, as Nomad sends), or the raw bytes with plain=true.
func (f *fakeNomad) logsEndpoint(w http.ResponseWriter, r *http.Request, allocID string) {
	q := r.URL.Query()
	task, typ := q.Get("task"), q.Get("type")
	if typ != "stdout" && typ != "stderr" {
		http.Error(w, "must provide a valid log type (stdout, stderr)", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	_, ok := f.allocs[allocID]
	data := append([]byte(nil), f.logs[allocID+"/"+task+"."+typ]...)
	f.mu.Unlock()
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

func (f *fakeNomad) catEndpoint(w http.ResponseWriter, r *http.Request, allocID string) {
	p := r.URL.Query().Get("path")
	rest, ok := strings.CutPrefix(p, "alloc/logs/")
	name, ok2 := strings.CutSuffix(rest, ".0")
	f.mu.Lock()
	data, found := f.logs[allocID+"/"+name]
	f.mu.Unlock()
	if !ok || !ok2 || !found {
		http.Error(w, "file not found", http.StatusNotFound)
		return
	}
	_, _ = w.Write(data)
}

// ---- what a Nomad client and the scheduler would do to an allocation ----

const step = 15 * time.Millisecond

func event(typ, msg string, details map[string]string) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, Time: time.Now().UnixNano(), DisplayMessage: msg, Details: details}
}

func (f *fakeNomad) taskName(j *api.Job) string { return j.TaskGroups[0].Tasks[0].Name }

// place creates a pending allocation for j.
func (f *fakeNomad) place(j *api.Job) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := f.bump()
	id := f.id("a")
	task := f.taskName(j)
	f.allocs[id] = &api.Allocation{
		ID: id, EvalID: f.id("e"), Name: *j.ID + "." + *j.TaskGroups[0].Name + "[0]", Namespace: "default",
		NodeID: "node-0001", NodeName: "client-1", JobID: *j.ID, TaskGroup: *j.TaskGroups[0].Name,
		DesiredStatus: "run", ClientStatus: "pending",
		TaskStates: map[string]*api.TaskState{task: {State: "pending", Events: []*api.TaskEvent{
			event(api.TaskReceived, "Task received by client", nil),
		}}},
		CreateIndex: idx, ModifyIndex: idx,
	}
	return id
}

// update changes an allocation (and possibly its job) under the lock.
func (f *fakeNomad) update(allocID string, fn func(a *api.Allocation, ts *api.TaskState, j *api.Job)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.allocs[allocID]
	var ts *api.TaskState
	for _, s := range a.TaskStates {
		ts = s
	}
	fn(a, ts, f.jobs[a.JobID])
	a.ModifyIndex = f.bump()
}

func setStatus(j *api.Job, s string) { j.Status = &s }

func (f *fakeNomad) start(allocID string) {
	f.update(allocID, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		a.ClientStatus = "running"
		ts.State = "running"
		ts.Events = append(ts.Events, event(api.TaskSetup, "Building Task Directory", nil),
			event(api.TaskStarted, "Task started by client", nil))
		setStatus(j, "running")
	})
}

func (f *fakeNomad) writeLog(allocID, task, typ, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[allocID+"/"+task+"."+typ] = append(f.logs[allocID+"/"+task+"."+typ], data...)
}

func (f *fakeNomad) exit(allocID string, code int) {
	f.update(allocID, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		ts.State, ts.Failed = "dead", code != 0
		ts.Events = append(ts.Events, event(api.TaskTerminated, fmt.Sprintf("Exit Code: %d", code),
			map[string]string{"exit_code": strconv.Itoa(code), "signal": "0", "oom_killed": "false"}))
		a.ClientStatus = "complete"
		if code != 0 {
			a.ClientStatus = "failed"
			ts.Events = append(ts.Events, event(api.TaskNotRestarting, "Error was unrecoverable", nil))
		}
		setStatus(j, "dead")
	})
}

// exitScenario runs the task, which prints some noise and then report on
// stdout, logs on stderr, and exits with code.
func exitScenario(code int, stdout string) func(f *fakeNomad, j *api.Job) {
	return func(f *fakeNomad, j *api.Job) {
		time.Sleep(step)
		id := f.place(j)
		time.Sleep(step)
		f.start(id)
		time.Sleep(step)
		f.writeLog(id, f.taskName(j), "stderr", "level=info msg=\"starting migration\"\n")
		f.writeLog(id, f.taskName(j), "stdout", stdout)
		f.exit(id, code)
	}
}

// driverFailure: the image cannot be pulled; the task never terminates.
func driverFailure(f *fakeNomad, j *api.Job) {
	time.Sleep(step)
	id := f.place(j)
	time.Sleep(step)
	f.update(id, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		ts.State, ts.Failed = "dead", true
		ts.Events = append(ts.Events,
			&api.TaskEvent{Type: api.TaskDriverFailure, DisplayMessage: "Failed to pull `hookdeck/outpost:nope`: manifest unknown",
				DriverError: "Failed to pull `hookdeck/outpost:nope`: manifest unknown"},
			event(api.TaskNotRestarting, "Error was unrecoverable", nil))
		a.ClientStatus = "failed"
		setStatus(j, "dead")
	})
}

// lostAlloc: the task starts, then its node stops heartbeating.
func lostAlloc(f *fakeNomad, j *api.Job) {
	time.Sleep(step)
	id := f.place(j)
	time.Sleep(step)
	f.start(id)
	time.Sleep(step)
	f.update(id, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		a.ClientStatus, a.DesiredStatus = "lost", "stop"
		a.ClientDescription = "alloc is lost since its node is down"
		setStatus(j, "dead")
	})
}

// forever: the task starts and never ends.
func forever(f *fakeNomad, j *api.Job) {
	time.Sleep(step)
	id := f.place(j)
	time.Sleep(step)
	f.start(id)
}

func (f *fakeNomad) requestLog() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.requests, "\n")
}

func (f *fakeNomad) sawBlockingQuery() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.requests {
		if strings.HasPrefix(r, "GET /v1/job/") && strings.Contains(r, "index=") && !strings.Contains(r, "index=0") {
			return true
		}
	}
	return false
}
