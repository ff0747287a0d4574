#!/usr/bin/python3
# The role's apply step: runs `outpost migrate apply` and returns its report
# as the task's result, with a diff of each migration's state (before: the
# plan's, after: the apply's). In check mode it runs nothing and reports what
# apply would change, from the plan's report.
from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: outpost_apply
short_description: Run outpost migrate apply; in check mode, report what it would apply
description:
  - Runs the argv given (an C(outpost migrate apply --yes ...) command line)
    and returns the JSON report it prints on the last line of stdout.
  - In check mode nothing runs; the result says which migrations the plan
    found pending, and changed is true when there are any.
  - With --diff the result carries each migration's state before and after.
options:
  argv:
    description: The command line of apply.
    type: list
    elements: str
    required: true
  plan:
    description: The plan's report (the last line of its stdout, decoded).
    type: dict
    required: true
"""

# States apply acts on (schemas/common.json, migration.state).
TO_APPLY = ("pending", "partial", "interrupted")


def states(report):
    """One "id: state" line per migration of a report."""
    return "".join(
        "%s: %s\n" % (m.get("id"), m.get("state"))
        for m in report.get("migrations") or []
    )


def last_json(text):
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        doc = json.loads(lines[-1])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def would_apply(module, plan):
    pending = [m["id"] for m in plan.get("migrations") or [] if m.get("state") in TO_APPLY]
    after = "".join(
        "%s: %s\n" % (m.get("id"), "applied" if m.get("state") in TO_APPLY else m.get("state"))
        for m in plan.get("migrations") or []
    )
    module.exit_json(
        changed=bool(pending),
        rc=0,
        cmd=module.params["argv"],
        would_apply=pending,
        msg="would apply %d migrations: %s" % (len(pending), ", ".join(pending)) if pending else "nothing to apply",
        diff=dict(before=states(plan), after=after,
                  before_header="outpost migrate plan", after_header="after apply (check mode)"),
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str", required=True),
            plan=dict(type="dict", required=True),
        ),
        supports_check_mode=True,
    )
    plan = module.params["plan"]
    if plan.get("kind") != "PlanReport":
        module.fail_json(msg="plan: not a plan report (kind %r)" % plan.get("kind"))
    if module.check_mode:
        would_apply(module, plan)

    argv = module.params["argv"]
    rc, out, err = module.run_command(argv)
    result = dict(
        cmd=argv, rc=rc, stdout=out, stderr=err,
        stdout_lines=out.splitlines(), stderr_lines=err.splitlines(),
    )
    report = last_json(out)
    if report is None:
        module.fail_json(msg="outpost exited %d without a report" % rc, changed=False, **result)
    result["changed"] = bool(report.get("changed"))
    result["diff"] = dict(before=states(plan), after=states(report),
                          before_header="outpost migrate plan", after_header="outpost migrate apply")
    if rc != 0:
        module.fail_json(msg=report.get("msg") or "apply exited %d" % rc, **result)
    module.exit_json(msg=report.get("msg", ""), **result)


if __name__ == "__main__":
    main()
