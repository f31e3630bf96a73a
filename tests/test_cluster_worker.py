"""`sendit worker`'s core, without a cluster: the real pipeline per shard, progress patches
collected in a list instead of sent to the API (the one stand-in here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicomdata import KEY, PLANTED

from sendit_worker.cluster import Paths, ShardProgress, work
from sendit_worker.errors import ConfigError
from sendit_worker.sample import make_sample


def body(**spec) -> dict:
    return {
        "apiVersion": "sendit.dev/v1alpha1",
        "kind": "SenditBatch",
        "metadata": {"name": "b", "namespace": "ns", "uid": "uid-1"},
        "spec": {"source": {"folders": ["in"]}, "parallelism": 2, **spec},
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    make_sample(tmp_path / "src" / "in", patients=3, files=12)
    return tmp_path / "src"


def run_shards(b: dict, source: Path, tmp_path: Path, stage="process", send=True):
    patches: list[dict] = []
    paths = Paths(source, tmp_path / "work", tmp_path / "config", tmp_path / "local")
    for index in range(2):
        progress = ShardProgress(patches.append, index)
        assert work(b, stage, send, (index, 2), paths, progress) == 0
    return patches, paths


def test_shards_process_and_deliver_locally_reporting_counts_only(source, tmp_path, monkeypatch):
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    patches, paths = run_shards(body(destinations={"local": {"path": "/x"}}), source, tmp_path)
    last = {}
    for p in patches:
        for index, shard in p["status"]["shards"].items():
            last[index] = shard
    assert set(last) == {"0", "1"} and all(s["stage"] == "sent" for s in last.values())
    total = sum(s["anonymized"] + s["withheld"] + s["failed"] for s in last.values())
    assert total == sum(s["discovered"] for s in last.values()) == 12
    assert sum(s["sent"] for s in last.values()) == len(list(paths.local.rglob("*.dcm")))
    assert sum(s["outputs"]["local"] for s in last.values()) == sum(
        s["sent"] for s in last.values()
    )
    text = repr(patches)
    assert not any(v in text for v in PLANTED.values()) and "in/" not in text


def test_manual_stage_then_send_stage(source, tmp_path, monkeypatch):
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    b = body(destinations={"local": {"path": "/x"}}, send="manual")
    patches, paths = run_shards(b, source, tmp_path, send=False)
    assert {p["status"]["shards"][i]["stage"] for p in patches for i in p["status"]["shards"]} == {
        "processing",
        "processed",
    }
    assert not paths.local.exists()
    patches, _ = run_shards(b, source, tmp_path, stage="send", send=False)
    assert (
        sum(
            p["status"]["shards"][i].get("sent", 0)
            for p in patches[-3:]
            for i in p["status"]["shards"]
        )
        > 0
    )
    assert any(paths.local.rglob("*.dcm"))


def test_configuration_errors_are_permanent(source, tmp_path, monkeypatch):
    monkeypatch.delenv("SENDIT_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ConfigError, match="pseudonym key"):
        run_shards(body(destinations={"local": {"path": "/x"}}), source, tmp_path)
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    with pytest.raises(ConfigError, match="no destinations"):
        run_shards(body(), source, tmp_path)
    with pytest.raises(ConfigError, match="parallelism"):
        run_shards(body(parallelism=3, destinations={"local": {"path": "/x"}}), source, tmp_path)
