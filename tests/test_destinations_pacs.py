"""Delivery to a real PACS (Orthanc, tests/emulators.py) over DICOMweb STOW-RS and DIMSE
C-STORE: every image acknowledged one by one, a second delivery is no failure (the PACS
already holds them), and a PACS that refuses us fails fast and clearly before data moves."""

from __future__ import annotations

import json

import pytest
from batches import destinations
from dicomdata import KEY

from sendit_api.errors import Permanent, Transient
from sendit_worker.cli import main
from sendit_worker.destinations.errors import DestinationError, DestinationUnavailable
from sendit_worker.destinations.pacs import PacsSink
from sendit_worker.sample import make_sample

pytestmark = pytest.mark.emulators


def dicomweb(orthanc) -> PacsSink:
    return PacsSink(destinations(pacs={"dicomweb": {"url": orthanc.dicomweb}}).pacs)


def dimse(orthanc, called: str | None = None) -> PacsSink:
    settings = {"host": "127.0.0.1", "port": orthanc.dicom, "calledAETitle": called or orthanc.AE}
    return PacsSink(destinations(pacs={"dimse": settings}).pacs)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_a_series_is_stored_and_each_image_acknowledged(kind, orthanc, deidentified) -> None:
    orthanc.clear()
    _, series = deidentified
    sink = dicomweb(orthanc) if kind == "dicomweb" else dimse(orthanc)
    sink.preflight()
    assert sink.store(series[0]) == len(series[0])
    assert orthanc.instances() == {i.sop for i in series[0]}
    assert sink.store(series[0]) == len(series[0])  # already stored: delivered, not failed


def test_a_pacs_that_refuses_the_ae_title_fails_at_preflight(orthanc) -> None:
    with pytest.raises(DestinationError, match="refused the association") as err:
        dimse(orthanc, called="NOT-ORTHANC").preflight()
    assert isinstance(err.value, Permanent)


def test_a_pacs_that_is_down_is_transient(orthanc) -> None:
    down = PacsSink(destinations(pacs={"dicomweb": {"url": "http://127.0.0.1:9/dicom-web"}}).pacs)
    with pytest.raises(DestinationUnavailable) as err:
        down.preflight()
    assert isinstance(err.value, Transient)
    missing = PacsSink(destinations(pacs={"dicomweb": {"url": f"{orthanc.url}/no-such"}}).pacs)
    with pytest.raises(DestinationError, match="no DICOMweb"):
        missing.preflight()


def test_a_batch_whose_only_destination_is_a_pacs_runs_locally_and_reruns_exactly_once(
    orthanc, tmp_path, monkeypatch
) -> None:
    """`sendit run -f` with only a PACS: no --output needed; a rerun delivers nothing twice
    (the ledger) and Orthanc holds every image once."""
    orthanc.clear()
    monkeypatch.setenv("SENDIT_PSEUDONYM_KEY", KEY.decode())
    images = make_sample(tmp_path / "src" / "st", patients=1, files=6)
    dimse_cfg = f"{{host: 127.0.0.1, port: {orthanc.dicom}, calledAETitle: {orthanc.AE}}}"
    (tmp_path / "b.yaml").write_text(
        "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: to-pacs}\n"
        "spec:\n  source:\n    volume: {hostPath: {path: src}}\n    folders: [st]\n"
        f"  destinations: {{pacs: {{dimse: {dimse_cfg}}}}}\n"
    )
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
        make_sample(tmp_path / "src" / "st", patients=2, files=30)
        dimse_cfg = f"{{host: 127.0.0.1, port: {pacs.dicom}, calledAETitle: {pacs.AE}}}"
        (tmp_path / "b.yaml").write_text(
            "apiVersion: sendit.dev/v1alpha1\nkind: SenditBatch\nmetadata: {name: outage}\n"
            "spec:\n  source:\n    volume: {hostPath: {path: src}}\n    folders: [st]\n"
            f"  destinations: {{pacs: {{dimse: {dimse_cfg}, concurrency: 1}}}}\n"
        )
        report = tmp_path / "r.json"
        argv = ["run", "-f", str(tmp_path / "b.yaml"), "--workers", "1", "--report", str(report)]
        cli = ("-c", "import sys; from sendit_worker.cli import main; sys.exit(main())")
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
