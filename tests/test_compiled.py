"""The build users get: ``operators/``, the Avro codecs and the validator compiled by mypyc (setup.py) behave
exactly like the Python source.

The development install runs the ``.py`` files; ``pip install .`` and the Docker image run the
compiled modules. These tests build the package once as pip does, then run the unit tests of
``operators/``, the output records, the Avro reader and validation against the compiled modules,
compare the outputs of a simulated run, and move a recovery snapshot between the two builds in
both directions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._util import compiled_install

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# Runs a simulated catalogue through StoreState (item params first, then events in event-time order, in
# batches of 500 split by store) and prints a digest of every alert, trigger and late record.
# argv: [mode, snapshot path]; "first" stops halfway and pickles the states, "second" loads them and
# goes on; "whole" runs it all.
DIGEST = r"""
import hashlib, pickle, sys
from dataclasses import astuple
import operators.store
from demandsense.simulate import SimConfig, generate
from demandsense.validate import VALIDATORS
from operators.events import Origin
from operators.policy import Policy
from operators.store import StoreState

sim = generate(SimConfig(stores=2, skus=60, days=5, seed=11))
rows = [("ItemParams", r) for r in sim.items]
rows += sorted([("Sale", r) for r in sim.sales] + [("InventoryEvent", r) for r in sim.inventory],
               key=lambda kr: kr[1]["event_time"])
policy, now = Policy(), 2**62
events = [VALIDATORS[k](r, now, None, Origin(k, 0, i)) for i, (k, r) in enumerate(rows)]
mode, path = sys.argv[1], sys.argv[2]
half = len(events) // 2
part = events[:half] if mode == "first" else events[half:] if mode == "second" else events
stores = pickle.load(open(path, "rb")) if mode == "second" else {}
h, n = hashlib.sha256(), {"alerts": 0, "triggers": 0}
outs = []
for i in range(0, len(part), 500):
    by_store = {}
    for ev in part[i : i + 500]:
        by_store.setdefault(ev.store_id, []).append(ev)
    for sid, evs in by_store.items():
        outs.append(stores.setdefault(sid, StoreState(sid)).on_events(evs, policy))
if mode == "first":
    pickle.dump(stores, open(path, "wb"), protocol=pickle.HIGHEST_PROTOCOL)
else:
    outs += [s.flush(policy) for s in stores.values()]
for out in outs:
    for rec in (*out.alerts, *out.triggers, *out.late):
        h.update(repr(astuple(rec)).encode())
    n["alerts"] += len(out.alerts)
    n["triggers"] += len(out.triggers)
print(operators.store.__file__, n["alerts"], n["triggers"], h.hexdigest())
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as ``pip install .`` builds it, in a directory of its own."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: the compiled build cannot be made here")
    target = tmp_path_factory.mktemp("compiled")
    compiled_install(target)
    return target


def test_without_a_c_compiler_the_build_is_pure_python(tmp_path: Path) -> None:
    env = {**os.environ, "DEMANDSENSE_COMPILE": "1", "CC": str(tmp_path / "no-such-cc")}
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "pure"),
                          "-v", str(ROOT)], env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no C compiler" in run.stdout + run.stderr
    assert (tmp_path / "pure" / "operators" / "store.py").exists()
    assert not list((tmp_path / "pure").rglob("*.so"))


def python(path: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python with ``path`` (the compiled build) or the source tree first on the path (``-P``: not the cwd)."""
    first = str(path) if path is not None else str(ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([first, str(ROOT)])}
    return subprocess.run([sys.executable, "-P", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def digest(path: Path | None, mode: str, snapshot: Path) -> tuple[str, int, int, str]:
    run = python(path, "-c", DIGEST, mode, str(snapshot))
    assert run.returncode == 0, run.stderr[-3000:]
    module, alerts, triggers, sha = run.stdout.split()
    return module, int(alerts), int(triggers), sha


def test_the_build_compiles_every_module_of_the_domain_math_the_avro_codecs_and_validation(compiled: Path) -> None:
    modules = [f"operators.{p.stem}" for p in sorted((ROOT / "operators").glob("*.py")) if p.stem != "__init__"]
    modules += [f"demandsense.{m}" for m in ("avro_reader", "avro_writer", "serde", "validate")]
    run = python(compiled, "-c", f"import importlib; print(*(importlib.import_module(m).__file__ for m in {modules}))")
    assert run.returncode == 0, run.stderr
    files = run.stdout.split()
    assert len(files) == len(modules) >= 8
    assert all(f.startswith(str(compiled)) and f.endswith(".so") for f in files), files


def test_the_unit_tests_of_operators_records_and_input_pass_against_the_compiled_modules(compiled: Path) -> None:
    check = (
        "import operators.store as s, demandsense.avro_reader as a, demandsense.avro_writer as w, "
        "demandsense.serde as c, demandsense.validate as v, sys, pytest; "
        "assert all(m.__file__.endswith('.so') for m in (s, a, w, c, v)), [m.__file__ for m in (s, a, w, c, v)]; "
    )
    run = python(compiled, "-c", check + "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                 "'--import-mode=append', 'tests/operators', 'tests/flows/test_sinks.py', "
                 "'tests/test_avro_reader.py', 'tests/test_avro_writer.py', 'tests/test_serde.py', "
                 "'tests/test_validate.py', "
                 "'tests/test_bad_input_at_scale.py']))")  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_compiled_and_pure_python_give_the_same_alerts_and_triggers(compiled: Path, tmp_path: Path) -> None:
    pure = digest(None, "whole", tmp_path / "unused")
    fast = digest(compiled, "whole", tmp_path / "unused")
    assert pure[0].endswith(".py") and fast[0].endswith(".so")
    assert pure[1] > 0 and pure[2] > 0, "the simulated run must raise alerts and triggers to compare"
    assert fast[1:] == pure[1:]


@pytest.mark.integration
def test_the_compiled_build_runs_the_flow_and_says_so(compiled: Path, kafka_bootstrap: str, topic_factory) -> None:
    topics = [t for name in ("sales", "inventory", "alerts", "triggers", "dead-letter") for t in
              (f"--{name}-topic", topic_factory())]  # fmt: skip
    run = python(compiled, "-m", "demandsense.cli", "run", "--log-format", "json", "--bootstrap-servers",
                 kafka_bootstrap, "--exit-at-end", "--metrics-port", "0", *topics)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    starting = next(json.loads(line) for line in run.stderr.splitlines() if '"flow starting"' in line)
    assert starting["compiled"] is True


@pytest.mark.parametrize("first, second", [("pure", "compiled"), ("compiled", "pure")])
def test_a_snapshot_moves_between_the_builds(compiled: Path, tmp_path: Path, first: str, second: str) -> None:
    where = {"pure": None, "compiled": compiled}
    snapshot = tmp_path / "stores.pickle"
    digest(None, "first", snapshot)
    reference = digest(None, "second", snapshot)  # the second half after a pure Python snapshot
    digest(where[first], "first", snapshot)
    moved = digest(where[second], "second", snapshot)
    assert reference[1] > 0
    assert moved[1:] == reference[1:]
