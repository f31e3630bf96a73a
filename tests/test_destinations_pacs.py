"""Delivery to a real PACS (Orthanc, tests/emulators.py) over DICOMweb STOW-RS and DIMSE
C-STORE: every image acknowledged one by one (over DIMSE, by a storage commitment report),
a second delivery is no failure (the PACS already holds them), an image the PACS refuses or
does not hold fails its series with the PACS's reason, and a PACS that refuses us fails fast
and clearly before data moves."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
from pathlib import Path

import pydicom
import pytest
from batches import destinations
from dicomdata import KEY
from emulators import free_port, free_ports
from pydicom import Dataset
from pynetdicom import AE, evt

from sendit_api.errors import Permanent, Transient
from sendit_api.names import PACS_TLS_ENV
from sendit_worker.cli.main import main
from sendit_worker.cli.sample import make_sample
from sendit_worker.destinations import commitment
from sendit_worker.destinations.errors import (
    DeliveryError,
    DestinationError,
    DestinationUnavailable,
)
from sendit_worker.destinations.pacs import PacsSink

pytestmark = pytest.mark.emulators


def dicomweb(orthanc) -> PacsSink:
    return PacsSink(destinations(pacs={"dicomweb": {"url": orthanc.dicomweb}}).pacs)


def dimse_settings(orthanc, mode: str = "auto", **titles: str) -> dict:
    """Orthanc's DIMSE port; our listener for its commitment reports where it sends them."""
    commitment = {"mode": mode, "port": orthanc.commitment_port, "bindAddress": "127.0.0.1"}
    return {
        "host": "127.0.0.1",
        "port": orthanc.dicom,
        "calledAETitle": orthanc.AE,
        "storageCommitment": {**commitment, "timeoutSeconds": 10},
        **titles,
    }


def dimse(orthanc, mode: str = "auto", **titles: str) -> PacsSink:
    return PacsSink(destinations(pacs={"dimse": dimse_settings(orthanc, mode, **titles)}).pacs)


def dimse_yaml(orthanc) -> str:
    return json.dumps(dimse_settings(orthanc))


def reports_seen(sink: PacsSink) -> list[str]:
    """Where each commitment report came: 'new association' or 'same association'."""
    seen: list[str] = []
    handle = sink.reports.handle

    def spy(event):
        seen.append("same association" if event.assoc.is_requestor else "new association")
        return handle(event)

    sink.reports.handle = spy
    return seen


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_a_series_is_stored_and_each_image_acknowledged(kind, orthanc, deidentified) -> None:
    orthanc.clear()
    _, series = deidentified
    sink = dicomweb(orthanc) if kind == "dicomweb" else dimse(orthanc)
    try:
        sink.preflight()
        assert sink.store(series[0]) == len(series[0])
        assert orthanc.instances() == {i.sop for i in series[0]}
        assert sink.store(series[0]) == len(series[0])  # already stored: delivered, not failed
    finally:
        sink.close()


def test_over_dimse_an_image_counts_once_the_pacs_commits_to_it(orthanc, deidentified) -> None:
    """Storage commitment: Orthanc (which knows our AE title) reports on a new association to
    our listener; the series counts only once that report lists every image."""
    orthanc.clear()
    _, series = deidentified
    sink = dimse(orthanc, mode="required")
    seen = reports_seen(sink)
    try:
        sink.preflight()
        assert sink.store(series[1]) == len(series[1])
        assert seen == ["new association"]
    finally:
        sink.close()


def test_each_shard_gets_the_commitment_reports_it_asked_for(orthanc, deidentified) -> None:
    """Three shards deliver at once. Orthanc reports on a new association to the address it
    knows for the calling AE title: each shard calls as its own title (SENDIT-<index>) and
    listens on its own port (port + index), so every report reaches the shard that waits for
    it (before, all three called as SENDIT: the reports went to one address, and the other
    shards' listeners could not even bind)."""
    orthanc.clear()
    _, series = deidentified
    base = free_ports(3)
    for index in range(3):
        orthanc.know(f"SENDIT-{index}", base + index)
    settings = dimse_settings(orthanc, "required")
    settings["storageCommitment"]["port"] = base
    config = destinations(pacs={"dimse": settings}).pacs
    sinks = [PacsSink(config, (index, 3)) for index in range(3)]
    assert [(s.ae_title, s.report_port) for s in sinks] == [
        (f"SENDIT-{i}", base + i) for i in range(3)
    ]
    seen = [reports_seen(sink) for sink in sinks]
    stored: list[int] = []
    try:
        for sink in sinks:
            sink.preflight()
        threads = [
            threading.Thread(target=lambda s=sink, i=i: stored.append(s.store(series[i])))
            for i, sink in enumerate(sinks)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for sink in sinks:
            sink.close()
    assert sorted(stored) == sorted(len(series[i]) for i in range(3))
    assert seen == [["new association"]] * 3
    assert orthanc.instances() == {i.sop for s in series[:3] for i in s}


def test_a_shard_ae_title_too_long_for_its_suffix_is_a_configuration_error(orthanc) -> None:
    settings = {**dimse_settings(orthanc), "callingAETitle": "SENDIT-RESEARCH1"}
    with pytest.raises(Permanent, match="no room for the shard's suffix -2"):
        PacsSink(destinations(pacs={"dimse": settings}).pacs, (2, 3))
    assert PacsSink(destinations(pacs={"dimse": settings}).pacs).ae_title == "SENDIT-RESEARCH1"


def test_an_image_stored_but_not_committed_fails_its_series_with_the_reason(
    orthanc, deidentified
) -> None:
    """C-STORE said success, but the PACS no longer holds one image when asked to commit
    (deleted in between, as by a PACS's own rule): the report lists it as failed."""
    orthanc.clear()
    _, series = deidentified
    sink = dimse(orthanc, mode="required")
    commit = sink._committed

    def lose_one(assoc, stored):
        orthanc.delete(str(stored[0].SOPInstanceUID))
        return commit(assoc, stored)

    sink._committed = lose_one
    try:
        with pytest.raises(DeliveryError) as err:
            sink.store(series[1])
    finally:
        sink.close()
    assert f"did not acknowledge 1 of {len(series[1])} images" in str(err.value)
    assert "not committed: failure reason 0x0112 no such object instance" in str(err.value)
    assert len(orthanc.instances()) == len(series[1]) - 1


def test_a_pacs_that_does_not_know_our_ae_title_for_commitment(orthanc, deidentified, caplog):
    """Orthanc refuses a commitment request from an AE title it has no modality for: in auto
    mode the C-STORE statuses count (said once in the log); required, the series fails."""
    orthanc.clear()
    _, series = deidentified
    auto = dimse(orthanc, callingAETitle="STRANGER")
    try:
        with caplog.at_level(logging.WARNING, "sendit.pacs"):
            assert auto.store(series[0]) == len(series[0])
            assert auto.store(series[1]) == len(series[1])
    finally:
        auto.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"{auto.what} refused the storage commitment request: the C-STORE statuses count instead"
    ]
    required = dimse(orthanc, mode="required", callingAETitle="STRANGER")
    try:
        with pytest.raises(DestinationError, match="storageCommitment is required"):
            required.store(series[0])
    finally:
        required.close()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("dicomweb", "listed by STOW-RS, not held"),
        ("dimse", "not committed: failure reason 0x0112 no such object instance"),
    ],
)
def test_an_image_the_pacs_refuses_fails_its_series_and_the_others_are_stored(
    kind, reason, orthanc_that_refuses_one, deidentified
) -> None:
    """Orthanc's filter drops the images whose UID ends in 7, yet says they were stored: in
    the STOW-RS response (so the QIDO-RS check after it is what catches them) and in the
    C-STORE status (so the storage commitment report is what catches them)."""
    pacs = orthanc_that_refuses_one
    pacs.clear()
    _, series = deidentified
    images = next(s for s in series if any(i.sop.endswith("7") for i in s))
    refused = sum(i.sop.endswith("7") for i in images)
    sink = dicomweb(pacs) if kind == "dicomweb" else dimse(pacs)
    try:
        with pytest.raises(DeliveryError) as err:
            sink.store(images)
    finally:
        sink.close()
    assert (
        f"did not acknowledge {refused} of {len(images)} images of a series ({refused} {reason})"
    ) in str(err.value)
    assert pacs.instances() == {i.sop for i in images if not i.sop.endswith("7")}


def test_a_stow_rs_answer_that_fails_one_instance_is_read_instance_by_instance(
    orthanc, deidentified, tmp_path
) -> None:
    """One file of a series that Orthanc cannot index (no SeriesInstanceUID): it answers the
    STOW-RS with an error status and a FailedSOPSequence naming it (reason 0xC000), and the
    ReferencedSOPSequence for the rest, which are stored."""
    orthanc.clear()
    _, series = deidentified
    images = [_copy(i, tmp_path) for i in series[0]]
    broken = pydicom.dcmread(images[-1].path)
    del broken.SeriesInstanceUID
    broken.save_as(images[-1].path)
    sink = dicomweb(orthanc)
    with pytest.raises(DeliveryError) as err:
        sink.store(images)
    assert f"did not acknowledge 1 of {len(images)} images of a series" in str(err.value)
    assert "(1 refused: failure reason 0xC000 cannot understand)" in str(err.value)
    assert orthanc.instances() == {i.sop for i in images[:-1]}


def _copy(image, folder):
    path = folder / image.path.name
    shutil.copyfile(image.path, path)
    return dataclasses.replace(image, path=path)


def test_a_pacs_that_refuses_the_ae_title_fails_at_preflight(orthanc) -> None:
    with pytest.raises(DestinationError, match="refused the association") as err:
        dimse(orthanc, calledAETitle="NOT-ORTHANC").preflight()
    assert isinstance(err.value, Permanent)


def test_a_pacs_that_is_down_is_transient(orthanc) -> None:
    down = PacsSink(destinations(pacs={"dicomweb": {"url": "http://127.0.0.1:9/dicom-web"}}).pacs)
    with pytest.raises(DestinationUnavailable) as err:
        down.preflight()
    assert isinstance(err.value, Transient)
    missing = PacsSink(destinations(pacs={"dicomweb": {"url": f"{orthanc.url}/no-such"}}).pacs)
    with pytest.raises(DestinationError, match="no DICOMweb"):
        missing.preflight()


def pacs_batch(tmp_path: Path, name: str, pacs: str) -> None:
    """`tmp_path/b.yaml`: a batch of the folder src/st whose only destination is `pacs` (YAML)."""
    (tmp_path / "b.yaml").write_text(
        f"apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {{name: {name}}}\n"
        "spec:\n  source:\n    volume: {hostPath: {path: src}}\n    folders: [st]\n"
        f"  destinations: {{pacs: {pacs}}}\n"
    )


def test_a_batch_whose_only_destination_is_a_pacs_runs_locally_and_reruns_exactly_once(
    orthanc, tmp_path, monkeypatch
) -> None:
    """`sendit run -f` with only a PACS: no --output needed; a rerun delivers nothing twice
    (the ledger) and Orthanc holds every image once."""
    orthanc.clear()
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    images = make_sample(tmp_path / "src" / "st", patients=1, files=6).files
    dimse_cfg = dimse_yaml(orthanc)
    pacs_batch(tmp_path, "to-pacs", f"{{dimse: {dimse_cfg}}}")
    report = tmp_path / "r.json"
    assert (
        main(["run", "-f", str(tmp_path / "b.yaml"), "--workers", "1", "--report", str(report)])
        == 0
    )

    first = json.loads(report.read_text())
    assert first["sent"] == first["anonymized"] > 0 and first["anonymized"] <= images
    assert len(orthanc.instances()) == first["sent"]
    assert (
        main(["run", "-f", str(tmp_path / "b.yaml"), "--workers", "1", "--report", str(report)])
        == 0
    )
    assert json.loads(report.read_text())["sent"] == first["sent"]
    assert len(orthanc.instances()) == first["sent"]


def test_dicomweb_credentials_come_from_the_environment(
    orthanc_with_login, deidentified, monkeypatch
) -> None:
    """As the operator fills them from pacs.credentialsSecretRef."""
    _, series = deidentified
    monkeypatch.setenv("SENDIT_PACS_USERNAME", "sendit")
    monkeypatch.setenv("SENDIT_PACS_PASSWORD", "wrong")
    with pytest.raises(DestinationError, match="no permission"):
        dicomweb(orthanc_with_login).preflight()
    monkeypatch.setenv("SENDIT_PACS_PASSWORD", "pacs-secret")
    sink = dicomweb(orthanc_with_login)
    sink.preflight()
    assert sink.store(series[0]) == len(series[0])


def test_a_pacs_that_goes_down_mid_batch_fails_the_run_and_the_rerun_completes_it(
    tmp_path, monkeypatch
) -> None:
    """Orthanc stopped while a batch is being delivered: the run ends incomplete (exit 1), no
    image is counted sent that the PACS did not acknowledge; Orthanc restarted, the rerun
    delivers the rest, and Orthanc holds every image once."""
    import subprocess
    import sys
    import time

    from emulators import Orthanc

    (tmp_path / "orthanc").mkdir()
    pacs = Orthanc(tmp_path / "orthanc")
    try:
        monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
        # Enough images that delivery is still going when Orthanc stops (a loaded machine sees
        # the first few stored late): 30 were all delivered before the stop once.
        make_sample(tmp_path / "src" / "st", patients=2, files=200)
        dimse_cfg = dimse_yaml(pacs)
        pacs_batch(tmp_path, "outage", f"{{dimse: {dimse_cfg}, concurrency: 1}}")
        report = tmp_path / "r.json"
        argv = ["run", "-f", str(tmp_path / "b.yaml"), "--workers", "1", "--report", str(report)]
        cli = ("-c", "import sys; from sendit_worker.cli.main import main; sys.exit(main())")
        run = subprocess.Popen([sys.executable, *cli, *argv], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None and len(pacs.instances()) < 3:
            time.sleep(0.1)
        assert run.poll() is None, "the batch finished before the PACS could go down"
        pacs.stop()
        assert run.wait(120) == 1  # incomplete: a rerun completes it
        first = json.loads(report.read_text())
        assert first["sent"] < first["anonymized"]
        pacs.start()
        assert main(argv) == 0
        done = json.loads(report.read_text())
        assert done["sent"] == done["anonymized"] == len(pacs.instances()) > first["sent"]
    finally:
        pacs.stop()


def use_tls(monkeypatch, pki, *keys: str) -> None:
    """The credentials Secret's TLS keys, as the operator passes them (file paths)."""
    for key, variable in PACS_TLS_ENV.items():
        if key in keys:
            monkeypatch.setenv(variable, str(pki[key]))
        else:
            monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_tls_checks_the_pacs_by_the_secrets_ca_and_presents_its_client_certificate(
    kind, orthanc_tls, deidentified, monkeypatch
) -> None:
    """HTTPS (through the fixture's TLS front) and Orthanc's DICOM TLS: the PACS's certificate
    is checked against ca.crt, and the PACS lets in only a client with tls.crt and tls.key;
    over DIMSE the commitment report comes back over TLS too."""
    pacs = orthanc_tls
    pacs.clear()
    _, series = deidentified

    def sink() -> PacsSink:
        if kind == "dicomweb":
            return PacsSink(destinations(pacs={"dicomweb": {"url": pacs.https}}).pacs)
        return dimse(pacs, mode="required", tls=True)

    for keys in [("tls.crt", "tls.key"), ("ca.crt",)]:  # an unknown CA; no client certificate
        use_tls(monkeypatch, pacs.pki, *keys)
        with pytest.raises(DestinationError, match="TLS handshake failed") as err:
            sink().preflight()
        assert isinstance(err.value, Permanent)
    use_tls(monkeypatch, pacs.pki, "ca.crt", "tls.crt", "tls.key")
    good = sink()
    seen = reports_seen(good)
    try:
        good.preflight()
        assert good.store(series[0]) == len(series[0])
    finally:
        good.close()
    assert pacs.instances() == {i.sop for i in series[0]}
    assert seen == ([] if kind == "dicomweb" else ["new association"])


def test_a_run_whose_pacs_refuses_some_images_ends_incomplete_naming_the_reason(
    orthanc_that_refuses_one, tmp_path, monkeypatch, caplog
) -> None:
    """`sendit run` to a PACS that drops some images (over DICOMweb, where Orthanc still lists
    them as stored): the series holding one are not counted sent and the run exits 1
    (incomplete: what was delivered is recorded, a rerun retries only those series), saying
    why; every other image reaches the PACS."""
    pacs = orthanc_that_refuses_one
    pacs.clear()
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    # The sample's UIDs are random: with 30 images none ends in 7 in 1 run of 24 (0.9^30),
    # with 120, once in some 300,000.
    make_sample(tmp_path / "src" / "st", patients=2, files=120)
    pacs_batch(tmp_path, "refused", f"{{dicomweb: {{url: '{pacs.dicomweb}'}}}}")
    report = tmp_path / "r.json"
    argv = ["run", "-f", str(tmp_path / "b.yaml"), "--workers", "1", "--report", str(report)]
    assert main(argv) == 1
    done = json.loads(report.read_text())
    held = pacs.instances()
    assert not any(sop.endswith("7") for sop in held)
    assert 0 < done["sent"] < done["anonymized"] and done["sent"] < len(held)
    assert "(1 listed by STOW-RS, not held)" in caplog.text


def test_a_report_on_the_same_association_is_taken_too(deidentified) -> None:
    """A MOCK PACS (pynetdicom: no PACS here sends its commitment report on the request's own
    association, as the standard allows and Orthanc does not): it stores, commits, and
    reports back on that association; the series counts, and no listener was needed."""
    _, series = deidentified
    images = series[0]
    held: set[str] = set()

    def on_store(event):
        held.add(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def on_action(event):
        asked = event.action_information

        def report() -> None:
            info = Dataset()
            info.TransactionUID = asked.TransactionUID
            info.ReferencedSOPSequence = asked.ReferencedSOPSequence
            event.assoc.send_n_event_report(
                info, 1, commitment.PUSH_MODEL, commitment.PUSH_MODEL_INSTANCE
            )

        threading.Timer(0.2, report).start()
        return 0x0000, None

    ae = AE(ae_title="MOCKPACS")
    headers = [pydicom.dcmread(i.path, stop_before_pixels=True) for i in images]
    for kind, syntax in {(h.SOPClassUID, h.file_meta.TransferSyntaxUID) for h in headers}:
        ae.add_supported_context(kind, syntax)
    ae.add_supported_context(commitment.PUSH_MODEL, scu_role=True, scp_role=True)
    port = free_port()
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_N_ACTION, on_action)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    settings = {"host": "127.0.0.1", "port": port, "calledAETitle": "MOCKPACS"}
    # a port nobody sends to: the report must come on the association
    settings["storageCommitment"] = {
        "mode": "required",
        "bindAddress": "127.0.0.1",
        "port": free_port(),
    }
    sink = PacsSink(destinations(pacs={"dimse": settings}).pacs)
    seen = reports_seen(sink)
    try:
        assert sink.store(images) == len(images)
    finally:
        sink.close()
        server.shutdown()
    assert seen == ["same association"] and held == {i.sop for i in images}
