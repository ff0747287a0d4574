#!/bin/sh
# outpost-migrate-gate.sh: apply Outpost's pending storage migrations only
# when the plan says there are some, for any CI (POSIX sh, no other tool).
#
#   plan --detailed-exitcode   exit 0: nothing pending  -> stop, exit 0
#                              exit 2 + "pending" report -> apply
#                              anything else            -> stop, plan's code
#   apply --yes                its exit code is the script's
#
# Both JSON reports are kept in $OUTPOST_REPORT_DIR (plan.json, apply.json)
# for the CI to store as artifacts. Settings reach the tool through its own
# environment (REDIS_HOST, REDIS_PASSWORD, POSTGRES_URL, ... or CONFIG).
#
# Environment of this script (defaults in brackets):
#   OUTPOST               the program, word-split [outpost]; e.g.
#                         "docker run --rm --env-file .env registry.example.com/outpost-migrate:v0.1.0"
#   OUTPOST_REPORT_DIR    where the reports go [outpost-reports]
#   OUTPOST_FLAGS         flags for both steps, word-split, e.g. --redis-only []
#   OUTPOST_WAIT_FOR      --wait-for: how long a store that restarts is
#                         waited for, inside the tool [2m]
#   OUTPOST_LOCK_TIMEOUT  --lock-timeout: how long a busy lock is waited for [10m]
#   OUTPOST_MAX_RUNTIME   --max-runtime: then apply stops at a safe point,
#                         progress saved, exit 75; rerun the pipeline to go on [25m]
# With the defaults one pipeline run takes at most
#   plan 2 x 2m + apply (2 x 2m + 2 x 10m + 25m) + the CI's grace to stop it
# which fits the 60-minute job timeout of the GitHub and GitLab examples.
#
# Exit codes: 0 done or nothing to do; plan's code when plan fails (1, 64,
# 69, 77, 78, ...); 1 when plan exits 2 without a report saying "pending"
# (a crash: a Go panic exits 2 too); apply's code otherwise (0, or 4, 69,
# 75, ... as in the tool's table).
set -u

OUTPOST=${OUTPOST:-outpost}
dir=${OUTPOST_REPORT_DIR:-outpost-reports}
flags=${OUTPOST_FLAGS:-}
wait_for=${OUTPOST_WAIT_FOR:-2m}
lock_timeout=${OUTPOST_LOCK_TIMEOUT:-10m}
max_runtime=${OUTPOST_MAX_RUNTIME:-25m}

say() { echo "outpost-migrate-gate: $*" >&2; }

mkdir -p "$dir" || exit 1
rm -f "$dir/plan.json" "$dir/apply.json"

# $OUTPOST and $flags are split into words on purpose (a docker run prefix,
# several flags).
# shellcheck disable=SC2086
$OUTPOST migrate plan --detailed-exitcode --output json --wait-for "$wait_for" $flags >"$dir/plan.json"
code=$?
last=$(tail -n 1 "$dir/plan.json")
case $code in
0)
  say "nothing to apply: $last"
  exit 0
  ;;
2)
  case $last in
  *'"outcome":"pending"'*) say "migrations pending; applying" ;;
  *)
    say "plan exited 2 without a report saying pending (a crash?); not applying"
    exit 1
    ;;
  esac
  ;;
*)
  say "plan failed with exit $code; not applying: $last"
  exit "$code"
  ;;
esac

# shellcheck disable=SC2086
$OUTPOST migrate apply --yes --output json --wait-for "$wait_for" \
  --lock-timeout "$lock_timeout" --max-runtime "$max_runtime" $flags >"$dir/apply.json"
code=$?
say "apply exited $code: $(tail -n 1 "$dir/apply.json")"
exit "$code"
