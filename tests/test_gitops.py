"""GitOps health for SenditBatch: the Argo CD Lua check and the Flux CEL check, run for real.

The Lua script runs in Lua 5.1 (lupa's embedded interpreter; Argo CD's gopher-lua implements
5.1) over each case of health_test.yaml, exactly as Argo CD's own resource-customization tests
do: `obj` is the object, the script returns {status, message}. The Flux expressions run in a
CEL interpreter (cel-python) over the same objects, with Flux's order: inProgress, failed,
current, else InProgress. The real kstatus library (Flux's default) reads them too. A last
test checks the testdata still matches what the operator's
own status code writes, so the checks cannot drift from the conditions they read.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARGO = ROOT / "gitops" / "argocd" / "sendit.dev" / "SenditBatch"
FLUX = ROOT / "gitops" / "flux" / "senditbatch-health.yaml"
CASES = yaml.safe_load((ARGO / "health_test.yaml").read_text())["tests"]
# Argo CD health -> the kstatus/Flux status the same object must have.
FLUX_EXPECTED = {
    "new.yaml": "InProgress",
    "queued.yaml": "InProgress",
    "processing.yaml": "InProgress",
    "sent.yaml": "Current",
    "manual-done.yaml": "Current",
    "failed.yaml": "Failed",
    "missing-secret.yaml": "Failed",
    "suspended.yaml": "InProgress",
    "cancelled.yaml": "Failed",
    "stale-generation.yaml": "InProgress",
}


# What kstatus itself (Flux's default health check, kpt) computes for the same objects: it
# reads observedGeneration, Reconciling, Stalled, then Ready. One difference from the checks
# above: an object with no status yet is Current to it (the CEL check waits).
KSTATUS_EXPECTED = {
    **FLUX_EXPECTED,
    "new.yaml": "Current",
}


def load(case: dict) -> dict:
    return yaml.safe_load((ARGO / case["inputPath"]).read_text())


def run_lua(obj: dict) -> dict:
    import lupa.lua51  # a test dependency: it fails here, never skips, when missing

    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)

    def table(value):
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    script = (ARGO / "health.lua").read_text()
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def test_every_testdata_file_is_a_case():
    files = {p.name for p in (ARGO / "testdata").glob("*.yaml")}
    assert files == {Path(c["inputPath"]).name for c in CASES}
    assert files == set(FLUX_EXPECTED)


@pytest.mark.parametrize("case", CASES, ids=lambda c: Path(c["inputPath"]).stem)
def test_argocd_health(case):
    assert run_lua(load(case)) == case["healthStatus"]


def flux_status(obj: dict) -> str:
    import celpy  # cel-python, a test dependency

    check = yaml.safe_load(FLUX.read_text())
    assert (check["apiVersion"], check["kind"]) == ("sendit.dev/v1alpha1", "SenditBatch")
    env = celpy.Environment()
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    for key, status in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        program = env.program(env.compile(check[key]))
        try:
            result = program.evaluate(activation)
        except celpy.CELEvalError:
            return "InProgress"  # Flux keeps waiting on an expression that cannot evaluate
        if isinstance(result, celpy.CELEvalError):
            return "InProgress"
        if bool(result):
            return status
    return "InProgress"


@pytest.mark.parametrize("case", CASES, ids=lambda c: Path(c["inputPath"]).stem)
def test_flux_health(case):
    assert flux_status(load(case)) == FLUX_EXPECTED[Path(case["inputPath"]).name]


def kstatus(objects: list[dict]) -> list[dict]:
    """Run the real kstatus library (tests/helm/kstatus, built from the Go module proxy)."""
    from helm import build

    try:
        binary = build.ensure_kstatus()
    except build.BuildError as exc:
        pytest.fail(f"cannot build the kstatus CLI: {exc}", pytrace=False)
    proc = subprocess.run(
        [str(binary)], input=json.dumps(objects), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_kstatus_reads_the_batch():
    results = kstatus([load(case) for case in CASES])
    got = {Path(c["inputPath"]).name: r["status"] for c, r in zip(CASES, results, strict=True)}
    assert got == KSTATUS_EXPECTED


def test_testdata_conditions_are_the_operators():
    """The conditions in testdata are those status.conditions() writes for that phase."""
    from sendit_api.spec import parse_batch
    from sendit_api.status import Counts
    from sendit_operator import status

    for case in CASES:
        obj = load(case)
        st = obj.get("status")
        if not st or st["observedGeneration"] != obj["metadata"]["generation"]:
            continue  # no status yet, or one written for an earlier spec
        spec = parse_batch(obj).spec
        reason = next(c["reason"] for c in st["conditions"] if c["type"] == "Reconciling")
        if spec.suspend:
            reason = st["phase"]
        phase = status.Phase(st["phase"], reason, st["message"])
        counts = Counts.of(st.get("counts") or {})
        want = status.conditions(spec, phase, counts, st["observedGeneration"], [], "t")
        got = {c["type"]: c["status"] for c in st["conditions"]}
        assert {c["type"]: c["status"] for c in want if c["type"] in got} == got, case
