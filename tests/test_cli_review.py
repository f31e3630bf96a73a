"""`sendit run --quarantine` and `sendit review` as a reviewer runs them: what they print, the
files they write, exit codes, and one clear line for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dicomdata import KEY, leaks, planted_tokens
from withheld import BLOCKING, write_withheld

from sendit_api.names import PSEUDONYM_KEY_ENV
from sendit_worker.cli.main import main
from sendit_worker.quarantine.store import Quarantine


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY.decode())


@pytest.fixture
def kept(tmp_path: Path, capsys) -> tuple[Path, dict[str, str]]:
    """A run with a quarantine: the quarantine and each withheld image's reference, by class."""
    write_withheld(tmp_path / "in")
    (tmp_path / "blocking.deid").write_text(BLOCKING)
    args = ["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1"]
    args += ["--filter", str(tmp_path / "blocking.deid"), "--quarantine", str(tmp_path / "q")]
    assert main(args) == 0  # withheld on purpose: the run did what it should
    err = capsys.readouterr().err
    assert f"6 withheld kept for review: sendit review list {tmp_path / 'q'}" in err
    q = Quarantine.open(tmp_path / "q")
    return tmp_path / "q", {i.kind: i.ref for i in q.items()}


def sendit(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [Path(sys.executable).with_name("sendit"), *map(str, args)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def test_list_shows_each_image_by_reference_with_its_class_and_what_was_found(kept, capsys) -> None:
    q, refs = kept
    assert main(["review", "list", str(q)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["REF", "STATE", "REASON", "MODALITY", "SIZE", "DEVICE", "FOUND"]
    assert len(lines) == 7 and "6 of 6 waiting" in err
    row = next(line for line in lines if line.startswith(refs["burned-in-header"]))
    assert row.split()[:5] == [
        refs["burned-in-header"],
        "waiting",
        "burned-in-header",
        "CT",
        "128x128",
    ]
    assert any("text regions" in line for line in lines)  # the page the search read
    assert not leaks(out.encode(), planted_tokens())


def test_show_says_why_and_writes_the_preview_with_a_proposed_region(
    kept, tmp_path, capsys
) -> None:
    q, refs = kept
    ref = refs["burned-in-header"]
    assert main(["review", "show", str(q), ref, "-o", str(tmp_path / "look.png")]) == 0
    out = capsys.readouterr().out
    assert "the header says YES and no text was proven" in out
    assert (tmp_path / "look.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["review", "show", str(q), ref.replace(":", "-"), "--region", "2,2,30,10"]) == 0
    assert "green: the region proposed" in capsys.readouterr().out
    assert list((q / "previews").glob("*-proposed.png"))


def test_release_then_again_then_reject(kept, tmp_path, capsys) -> None:
    q, refs = kept
    before = len(list((tmp_path / "out").rglob("*.dcm")))
    release = ["review", "release", str(q), refs["burned-in-header"], "--region", "0,0,20,20"]
    assert main([*release, "--workers", "1"]) == 0
    assert f"{refs['burned-in-header']}: released" in capsys.readouterr().err
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == before + 1
    assert main(release) == 0
    assert "nothing sent again" in capsys.readouterr().err
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == before + 1
    face = ["review", "release", str(q), refs["face"], "--region", "0,0,8,8", "--workers", "1"]
    assert main(face) == 3  # the pipeline withheld it again: it waits
    assert "withheld again: recognizable visual features" in capsys.readouterr().err
    assert main(["review", "reject", str(q), refs["face"]]) == 0
    assert main(["review", "list", str(q)]) == 0
    states = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert states[refs["burned-in-header"]] == "released" and states[refs["face"]] == "rejected"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["release", "{q}", "0:NOSUCHREF0", "--region", "0,0,5,5"], "no such reference"),
        (["release", "{q}", "{ref}", "--region", "0,0,500,5"], "is outside the image"),
        (["release", "{q}", "{ref}", "--region", "0,0,five,5"], "four whole numbers"),
        (["release", "{q}", "{ref}"], "give what to blank"),
        (["release", "{q}", "{ref}", "--rule", "{tmp}/missing.deid"], "cannot read the rule"),
        (["release", "{q}", "{ref}", "--rule", "{tmp}/blocking.deid"], "names no region"),
        (["list", "{tmp}"], "not a quarantine"),
    ],
)
def test_mistakes_are_one_line_exit_2_and_change_nothing(kept, tmp_path, args, message) -> None:
    q, refs = kept
    before = {p: p.read_bytes() for p in q.rglob("*") if p.is_file()}
    values = {"q": q, "ref": refs["burned-in-header"], "tmp": tmp_path}
    result = sendit("review", *(a.format(**values) for a in args))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert {p: p.read_bytes() for p in q.rglob("*") if p.is_file()} == before


def test_a_run_without_a_quarantine_says_how_to_keep_withheld_images(tmp_path, capsys) -> None:
    write_withheld(tmp_path / "in")
    main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "1"])
    assert "--quarantine DIR keeps withheld images for review" in capsys.readouterr().err
