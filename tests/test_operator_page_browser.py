"""The status page in a real browser: Debian's headless Chromium (/usr/bin/chromium), driven by
Playwright, at the page a `sendit-operator` serves on the real control plane (the operator
and the fake node as in tests/test_operator_cluster.py). Batches in several phases: one run
for real to Sent, one suspended with shard reports patched into its status (Processing, a
known progress), one whose Secret is missing (Queued, stalled), one cancelled, one whose Job
is patched to failed (Failed). The page must show their rows and progress, follow a status
change without a reload and without a console error. A screenshot of each page is saved for
review. The operator's metrics are read at the end: they must have counted the same images."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_operator_cluster import Operator, allowing, free_port, manifest, prepare, running

from sendit_worker.cli.sample import make_sample

pytestmark = pytest.mark.controlplane
NS = "sendit-page"
CHROMIUM = Path("/usr/bin/chromium")
FOLDER = "ST-1"  # stands for an identifying folder name: the page must never show it


@pytest.fixture(scope="module")
def cluster(kube_cluster, fake_node, tmp_path_factory):
    prepare(kube_cluster, NS)
    data = tmp_path_factory.mktemp("page-data")
    make_sample(data / "in" / FOLDER, patients=2, files=6)
    kube_cluster.data = data
    # The workspace claim `manifest` names (parallelism 2 shares one plan), mapped by the node.
    fake_node.add_claim(NS, "work", data / "work")
    return kube_cluster


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("page-operator") / "operator.log"
    status = free_port()
    page = ("--status-port", str(status), "--status-address", "127.0.0.1")
    with running(cluster, log, allowing(cluster.data), NS, *page) as op:
        op.status = status
        yield op


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright  # the test extra; only this test needs it

    with sync_playwright() as pw:
        # Debian's build, never a downloaded one; no sandbox: the tests may run as root.
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def kubectl(cluster, *args: str, **kw):
    return cluster.kubectl("-n", NS, *args, **kw)


def status(cluster, name: str) -> dict:
    return json.loads(kubectl(cluster, "get", "sb", name, "-o", "json").stdout).get("status") or {}


def phase_is(cluster, name: str, phase: str) -> bool:
    return status(cluster, name).get("phase") == phase


def patch_status(cluster, name: str, patch: dict) -> None:
    kubectl(
        cluster,
        "patch",
        "sb",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": patch}),
    )


def fail_job(cluster, name: str) -> None:
    """The Job's status says it failed (its backoff limit reached), as the Job controller
    would write it (FailureTarget first, then Failed)."""
    at = "2026-01-01T00:00:00Z"
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "test",
            "lastProbeTime": at,
            "lastTransitionTime": at,
        }
        for kind in ("FailureTarget", "Failed")
    ]
    patch = {"status": {"conditions": conditions, "startTime": at, "completionTime": None}}
    kubectl(
        cluster,
        "patch",
        "job",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )


def shards(anonymized: tuple[int, int]) -> dict:
    return {
        "shards": {
            str(i): {"stage": "processing", "discovered": 20, "anonymized": n}
            for i, n in enumerate(anonymized)
        }
    }


@pytest.fixture(scope="module")
def batches(cluster, operator) -> dict[str, str]:
    """Batch name -> the phase it is left in before the page is opened (but `live`, which is
    applied by the test itself so that the page sees it move)."""
    data = cluster.data
    for name, spec in {
        "paused": {"suspend": True},
        "stuck": {
            "deidentify": {"pseudonymKey": {"secretKeyRef": {"name": "missing", "key": "k"}}}
        },
        "stopped": {"cancel": True},
        "broken": {"suspend": True},
    }.items():
        cluster.kubectl("apply", "-f", "-", input=manifest(name, data, namespace=NS, **spec))
    for name in ("paused", "broken"):
        wait_for(lambda n=name: phase_is(cluster, n, "Processing"), 60, f"{name} Processing")
    patch_status(cluster, "paused", shards((5, 0)))  # 5/40
    fail_job(cluster, "broken-plan")  # its first stage: the plan (suspended, never run)
    expected = {"paused": "Processing", "stuck": "Queued", "stopped": "Cancelled"}
    expected["broken"] = "Failed"
    for name, phase in expected.items():
        wait_for(lambda n=name, p=phase: phase_is(cluster, n, p), 60, f"{name} {phase}")
    wait_for(lambda: status(cluster, "paused").get("progress") == "5/40", 30, "paused at 5/40")
    return expected


def expect(locator):
    from playwright.sync_api import expect

    return expect(locator)


def row(page, name: str):
    return page.locator(f'tr[data-batch="{NS}/{name}"]')


def test_the_page_shows_every_batch_and_follows_it_to_sent(
    cluster, operator, batches, browser, tmp_path
):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    base = f"http://127.0.0.1:{operator.status}"
    page.goto(base + "/")
    for name, phase in batches.items():  # (the page reads kopf's index: it may lag a moment)
        expect(row(page, name).locator("td.phase")).to_have_text(phase, timeout=15_000)
    paused = row(page, "paused")
    expect(paused.locator("progress")).to_have_attribute("value", "12")  # 5/40
    expect(paused.locator("td.progress")).to_contain_text("5/40 · 12%")
    assert row(page, "stopped").locator("td.sent").inner_text() == "0"
    assert FOLDER not in page.content()

    # A status change shows without a reload: the shards report more, the bar follows.
    page.evaluate("window.__sameDocument = true")
    patch_status(cluster, "paused", shards((20, 10)))  # 30/40
    expect(paused.locator("progress")).to_have_attribute("value", "75", timeout=30_000)
    # A batch run for real: it appears, and its bar moves to Sent.
    cluster.kubectl("apply", "-f", "-", input=manifest("live", cluster.data, namespace=NS))
    expect(row(page, "live").locator("td.phase")).to_have_text("Sent", timeout=120_000)
    live = status(cluster, "live")
    assert row(page, "live").locator("progress").get_attribute("value") == "100"
    done = f"{live['counts']['sent']}/{live['counts']['anonymized']}"
    assert done in row(page, "live").locator("td.progress").inner_text()
    assert row(page, "live").locator("td.sent").inner_text() == str(live["counts"]["sent"])
    assert page.evaluate("window.__sameDocument") is True and loads == [base + "/"]
    assert page.locator("#refresh").inner_text().startswith("updated ")
    # The Events the operator posted on the way (listed at most every 5 s: a refresh or two).
    sent = page.locator("table.events tr", has_text=f"{NS}/live").filter(has_text="Sent")
    expect(sent.first).to_contain_text("every shard delivered", timeout=20_000)
    index = tmp_path / "status-page.png"
    page.screenshot(path=str(index), full_page=True)

    # The batch's own page: its shards and conditions, refreshed in place too.
    page.click(f'tr[data-batch="{NS}/live"] td.name a')
    page.wait_for_selector("section.batch")
    assert page.locator("tr[data-shard]").count() == 2
    assert "Ready" in page.locator("body").inner_text()
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#refresh")).to_have_text(re.compile("^updated "), timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    assert FOLDER not in page.content()
    batch = tmp_path / "status-page-batch.png"
    page.screenshot(path=str(batch), full_page=True)
    print(f"\nscreenshots: {index} {batch}")
    assert errors == []
    page.close()

    # The operator's metrics counted the same images, as increments: `paused` went 0 -> 5 ->
    # 30 anonymized, `live` ran for real; each of live's two shards timed its delivery once.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(operator.get(operator.metrics, "/metrics"))
        for s in family.samples
    }
    assert (
        samples[("sendit_images_total", (("outcome", "anonymized"),))]
        == 30 + (live["counts"]["anonymized"])
    )
    assert samples[("sendit_images_total", (("outcome", "sent"),))] == live["counts"]["sent"]
    assert samples[("sendit_delivery_seconds_count", ())] == 2
    assert samples[("sendit_batches", (("phase", "Sent"),))] == 1
