"""The handlers' registration: what kopf will call, and with which indexes (the cluster tests
run them for real)."""

from __future__ import annotations

import kopf

from sendit_operator.handlers import Config, register
from sendit_operator.policy import Policy


def test_every_handler_is_on_the_operators_registry_and_reads_its_indexes():
    registry = kopf.OperatorRegistry()
    register(registry, Config("img", 10, 7.0, lambda: Policy.strict("img")))
    indexes = {h.id for h in registry._indexing.get_all_handlers()}
    assert indexes == {"batch_index", "job_index"}  # the names handlers read from kwargs
    (timer,) = registry._spawning.get_all_handlers()
    assert timer.interval == 7.0  # --resync-seconds
    assert timer.when is not None and not timer.when(status={"phase": "Sent"})
    assert timer.when(status={"phase": "Processing"})
    watching = {h.selector.any_name for h in registry._watching.get_all_handlers()}
    assert watching == {"senditbatches", "jobs", "senditwatches"}
