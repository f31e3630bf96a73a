"""`sendit-operator`'s command line: its help needs none of the operator's packages, and a
missing one is one clear line (the worker's environment has no kopf)."""

from __future__ import annotations

import subprocess
import sys

# A stand-in for an install without the operator's extra: a None in sys.modules makes
# `import kopf` (and the others) fail as a missing package does.
WITHOUT_OPERATOR_PACKAGES = (
    "import sys\n"
    "for name in ('kopf', 'prometheus_client', 'aiohttp'):\n"
    "    sys.modules[name] = None\n"
    "from sendit_operator.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def operator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_OPERATOR_PACKAGES, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_help_works_without_the_operator_packages():
    result = operator("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sendit-operator")
    assert "--worker-image" in result.stdout


def test_running_without_them_says_what_to_install():
    result = operator("--namespace", "research")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "sendit-operator: kopf is missing: pip install 'sendit[operator]'"
    )
