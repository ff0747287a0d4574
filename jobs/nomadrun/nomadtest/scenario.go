package nomadtest

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Step is the pause between two changes a scenario makes, so that the
// runner sees intermediate states through its blocking queries.
const Step = 15 * time.Millisecond

// Event is a task event stamped now.
func Event(typ, msg string, details map[string]string) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, Time: time.Now().UnixNano(), DisplayMessage: msg, Details: details}
}

// TaskName is the name of j's first task (the fake runs one task per job).
func TaskName(j *api.Job) string { return j.TaskGroups[0].Tasks[0].Name }

// Place creates a pending allocation for j and returns its ID.
func (s *Server) Place(j *api.Job) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.bump()
	id := s.id("a")
	task := TaskName(j)
	s.allocs[id] = &api.Allocation{
		ID: id, EvalID: s.id("e"), Name: *j.ID + "." + *j.TaskGroups[0].Name + "[0]", Namespace: "default",
		NodeID: "node-0001", NodeName: "client-1", JobID: *j.ID, TaskGroup: *j.TaskGroups[0].Name,
		DesiredStatus: "run", ClientStatus: "pending",
		TaskStates: map[string]*api.TaskState{task: {State: "pending", Events: []*api.TaskEvent{
			Event(api.TaskReceived, "Task received by client", nil),
		}}},
		CreateIndex: idx, ModifyIndex: idx,
	}
	return id
}

// Update changes an allocation, its (only) task state and its job under the
// server's lock, and bumps the index so blocking queries return.
func (s *Server) Update(allocID string, fn func(a *api.Allocation, ts *api.TaskState, j *api.Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[allocID]
	var ts *api.TaskState
	for _, st := range a.TaskStates {
		ts = st
	}
	fn(a, ts, s.jobs[a.JobID])
	a.ModifyIndex = s.bump()
}

// SetStatus sets a job's status.
func SetStatus(j *api.Job, status string) { j.Status = &status }

// Start marks the allocation and its task running.
func (s *Server) Start(allocID string) {
	s.Update(allocID, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		a.ClientStatus = "running"
		ts.State = "running"
		ts.Events = append(ts.Events, Event(api.TaskSetup, "Building Task Directory", nil),
			Event(api.TaskStarted, "Task started by client", nil))
		SetStatus(j, "running")
	})
}

// WriteLog appends data to the task's log typ ("stdout" or "stderr").
func (s *Server) WriteLog(allocID, task, typ, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs[allocID+"/"+task+"."+typ] = append(s.logs[allocID+"/"+task+"."+typ], data...)
}

// Exit ends the task with code (a Terminated event), completing or failing
// the allocation, and marks the job dead.
func (s *Server) Exit(allocID string, code int) {
	s.Update(allocID, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		ts.State, ts.Failed = "dead", code != 0
		ts.Events = append(ts.Events, Event(api.TaskTerminated, fmt.Sprintf("Exit Code: %d", code),
			map[string]string{"exit_code": strconv.Itoa(code), "signal": "0", "oom_killed": "false"}))
		a.ClientStatus = "complete"
		if code != 0 {
			a.ClientStatus = "failed"
			ts.Events = append(ts.Events, Event(api.TaskNotRestarting, "Error was unrecoverable", nil))
		}
		SetStatus(j, "dead")
	})
}

// Task is what a scenario made with Exec runs: given the job as Nomad
// started it (a dispatched child carries the dispatch meta) and its task,
// it returns the exit code and what the task printed.
type Task func(j *api.Job, task *api.Task) (code int, stdout, stderr string)

// Exec places and starts the job's allocation, runs fn as its task, stores
// fn's output as the task's logs and ends the task with fn's exit code.
func Exec(fn Task) Scenario {
	return func(s *Server, j *api.Job) {
		time.Sleep(Step)
		id := s.Place(j)
		time.Sleep(Step)
		s.Start(id)
		code, stdout, stderr := fn(j, j.TaskGroups[0].Tasks[0])
		s.WriteLog(id, TaskName(j), "stderr", stderr)
		s.WriteLog(id, TaskName(j), "stdout", stdout)
		s.Exit(id, code)
	}
}

// Exit is a task that logs a line on stderr, prints stdout and exits with
// code.
func Exit(code int, stdout string) Scenario {
	return Exec(func(*api.Job, *api.Task) (int, string, string) {
		time.Sleep(Step)
		return code, stdout, "level=info msg=\"starting migration\"\n"
	})
}

// DriverFailure: the image cannot be pulled; the task never terminates.
func DriverFailure(s *Server, j *api.Job) {
	time.Sleep(Step)
	id := s.Place(j)
	time.Sleep(Step)
	s.Update(id, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		ts.State, ts.Failed = "dead", true
		ts.Events = append(ts.Events,
			&api.TaskEvent{Type: api.TaskDriverFailure, DisplayMessage: "Failed to pull `hookdeck/outpost:nope`: manifest unknown",
				DriverError: "Failed to pull `hookdeck/outpost:nope`: manifest unknown"},
			Event(api.TaskNotRestarting, "Error was unrecoverable", nil))
		a.ClientStatus = "failed"
		SetStatus(j, "dead")
	})
}

// LostAlloc: the task starts, then its node stops heartbeating.
func LostAlloc(s *Server, j *api.Job) {
	time.Sleep(Step)
	id := s.Place(j)
	time.Sleep(Step)
	s.Start(id)
	time.Sleep(Step)
	s.Update(id, func(a *api.Allocation, ts *api.TaskState, j *api.Job) {
		a.ClientStatus, a.DesiredStatus = "lost", "stop"
		a.ClientDescription = "alloc is lost since its node is down"
		SetStatus(j, "dead")
	})
}

// Forever: the task starts and never ends.
func Forever(s *Server, j *api.Job) {
	time.Sleep(Step)
	id := s.Place(j)
	time.Sleep(Step)
	s.Start(id)
}

var metaRef = regexp.MustCompile(`\$\{NOMAD_META_([A-Za-z0-9_]+)\}`)

// Interpolate replaces ${NOMAD_META_<key>} in args with the job's meta, as
// a Nomad client does for a task's driver config (an unknown key becomes
// empty, as in Nomad).
func Interpolate(j *api.Job, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = metaRef.ReplaceAllStringFunc(a, func(m string) string {
			return j.Meta[metaRef.FindStringSubmatch(m)[1]]
		})
	}
	return out
}
