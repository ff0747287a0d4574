# A stdout callback for the recipe's Go test: one JSON line per task result
# and one for the play's stats. ansible-core's own "json" callback lives in
# the ansible.posix collection, which Debian's ansible-core does not ship.
import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record
type: stdout
short_description: JSON lines of task results, for tests
description:
  - Prints one JSON object per task result and one for the stats.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "record"

    def _emit(self, event, result):
        doc = {
            "event": event,
            "task": result._task.get_name(),
            "host": result._host.get_name(),
            "result": result._result,
        }
        self._display.display(json.dumps(doc, default=str))

    def v2_runner_on_ok(self, result):
        self._emit("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._emit("failed", result)

    def v2_runner_on_skipped(self, result):
        self._emit("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._emit("unreachable", result)

    def v2_runner_retry(self, result):
        self._emit("retry", result)

    def v2_on_file_diff(self, result):
        # Called only with --diff (or a task's diff: true), for a result
        # that carries a diff.
        self._emit("diff", result)

    def v2_playbook_on_stats(self, stats):
        hosts = {h: stats.summarize(h) for h in sorted(stats.processed.keys())}
        self._display.display(json.dumps({"event": "stats", "hosts": hosts}))
