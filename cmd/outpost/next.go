package main

import (
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// suggestNext fills the report's next step where the outcome has one and
// the runner did not say it already: what a person (or a pipeline) does
// after this command.
func suggestNext(rep *report.Report, o *opts) {
	if rep.Next != "" {
		return
	}
	scope := ""
	if o.redisOnly {
		scope = " --redis-only"
	} else if o.sqlOnly {
		scope = " --sql-only"
	}
	switch rep.Outcome {
	case report.OutcomePending:
		rep.Next = "outpost migrate apply" + scope + " (it shows the plan and asks first)"
	case report.OutcomeApplied:
		rep.Next = "outpost migrate verify" + scope + " checks every record"
		if appliedNow(rep, "redis/001_") {
			rep.Next += "; the legacy keys 001 copied are kept (Outpost reads only the copies): `outpost migrate cleanup` removes them once verify passes"
		}
	case report.OutcomeVerified:
		if hasApplied(rep, "redis/001_") {
			rep.Next = "if not done yet, `outpost migrate cleanup` removes the legacy keys whose copies verify"
		}
	case report.OutcomeCompleted:
		rep.Next = "on your own data (changes nothing): outpost migrate plan --redis-host HOST --show-examples 2; " +
			"the same demo on an empty real Redis: outpost demo --redis-host localhost; every command: outpost --help"
	case report.OutcomeUnlocked:
		rep.Next = "rerun the command that held the lock: it resumes from its checkpoint"
	case report.OutcomeLocked:
		rep.Next = "wait for the holder to finish (--lock-timeout waits longer); if it crashed, `outpost migrate status` shows it and `outpost migrate unlock` removes its lock"
	case report.OutcomeDrift:
		rep.Next = "see the issues; `outpost migrate apply` repairs what a rerun can"
	}
	if rep.Error != nil && rep.Error.Code == report.CodeConfirmationRequired {
		rep.Next = "rerun with --yes (in a job or pipeline) or on a terminal to be asked"
	}
}

func appliedNow(rep *report.Report, prefix string) bool {
	for _, m := range rep.Migrations {
		if strings.HasPrefix(m.ID, prefix) && m.State == "applied" && m.Counts != nil {
			return true
		}
	}
	return false
}

func hasApplied(rep *report.Report, prefix string) bool {
	for _, m := range rep.Migrations {
		if strings.HasPrefix(m.ID, prefix) && (m.State == "applied" || m.State == "verified") {
			return true
		}
	}
	return false
}
