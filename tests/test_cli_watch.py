"""The SenditWatch scan: one batch per finished folder, exactly once, never named after it."""

from __future__ import annotations

from sendit_worker.cli.watch import scan

KEY = b"watch-test-key-0123456789"
WATCH = {
    "metadata": {"name": "w", "namespace": "ns"},
    "spec": {
        "volume": {"hostPath": {"path": "/data"}},
        "path": "incoming",
        "template": {"deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "k", "key": "k"}}}},
    },
}


def test_each_finished_folder_makes_one_batch_once(tmp_path):
    incoming = tmp_path / "incoming"
    for name in ("ST-PID7734129", "ST-000002", "ST-000003.tmp2343"):
        (incoming / name).mkdir(parents=True)
    made: dict[str, dict] = {}

    def create(batch):
        if batch["metadata"]["name"] in made:
            return False
        made[batch["metadata"]["name"]] = batch
        return True

    status = scan(WATCH, tmp_path, KEY, create)
    assert status["created"] == 2 and len(made) == 2
    folders = sorted(b["spec"]["source"]["folders"][0] for b in made.values())
    assert folders == ["incoming/ST-000002", "incoming/ST-PID7734129"]
    for name, b in made.items():
        assert "PID" not in name and "ST-" not in name and name.startswith("w-")
        assert b["metadata"]["labels"] == {"sendit.dev/watch": "w"}
        assert b["spec"]["source"]["volume"] == {"hostPath": {"path": "/data"}}
    assert not any("ST-" in token for token in status["seen"])

    # The exporter finishes the third folder; a batch deleted meanwhile is not made again.
    (incoming / "ST-000003.tmp2343").rename(incoming / "ST-000003")
    made.clear()
    again = scan({**WATCH, "status": status}, tmp_path, KEY, create)
    assert again["created"] == 3 and len(made) == 1
    assert [b["spec"]["source"]["folders"] for b in made.values()] == [["incoming/ST-000003"]]
    made.clear()
    assert scan({**WATCH, "status": again}, tmp_path, KEY, create)["created"] == 3
    assert made == {}
