"""Smoke test of the bench runner on the tiniest settings: it runs, and its JSON is well formed.

No timing assertions: speed goals are reported by ``python -m benchmarks``, never tested.
The bench always runs on NumPy, whatever backend the suite was started with.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from benchmarks import CASES, DEFAULT_CASES, SCHEMA, run_bench
from benchmarks.__main__ import build_parser

INSTALLED = [lib for lib in ("torch", "jax") if importlib.util.find_spec(lib) is not None]
# a CPU stand-in for a GPU backend spec of --device-backend
DEVICE_SPEC = next(
    (s for s in ("array_api_strict", "torch") if importlib.util.find_spec(s) is not None), "numpy"
)
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def _positive_finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _check_case(case: dict, key: str) -> None:
    assert case["key"] == key
    assert case["failed"] == {}, case["failed"]
    assert case["rows"], f"case {key} has no rows"
    assert {
        "title",
        "settings",
        "columns",
        "targets",
        "skipped",
        "notes",
        "environment",
        "elapsed_s",
    } <= case.keys()
    assert all(isinstance(c, list) and len(c) == 3 for c in case["columns"])
    for row in case["rows"]:
        assert isinstance(row["name"], str)
        if "timing" in row:
            assert _positive_finite(row["median_s"])
            assert row["timing"]["repeats"] >= 1
            assert all(_positive_finite(t) for t in row["timing"]["per_step_s"])
            assert math.isfinite(row["spread"]) and row["spread"] >= 0
        for k in ("ratio", "paired_ratio"):
            if row.get(k) is not None:
                assert _positive_finite(row[k]), row
    for t in case["targets"]:
        assert {"goal", "ratio_name", "ratio", "op", "threshold", "met"} <= t.keys()
        assert t["paired_ratio"] is None or _positive_finite(t["paired_ratio"])
        if t["ratio"] is None:
            assert t["met"] is None
        else:
            assert isinstance(t["met"], bool)
            if "(MiB)" not in t["ratio_name"]:  # e's and g's RSS growth in MiB may be 0 or negative
                assert _positive_finite(t["ratio"]), t


def test_bench_tiny_in_process_writes_json(tmp_path) -> None:
    report = run_bench(
        ["a", "b", "d", "e"], profile="tiny", libraries=INSTALLED, isolate=False, progress=False
    )
    path = tmp_path / "bench.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["settings"]["profile"] == "tiny"
    assert data["settings"]["cases"] == ["a", "b", "d", "e"]
    env = data["environment"]
    assert env["versions"]["numpy"] == np.__version__
    assert env["blas_threads"] >= 1 and env["cpu"] and env["cpu_count"] >= 1
    assert set(data["cases"]) == {"a", "b", "d", "e"}
    for key, case in data["cases"].items():
        _check_case(case, key)
    names_a = [r["name"] for r in data["cases"]["a"]["rows"]]
    assert names_a[:4] == [
        "portable_nn (compile_step)", "portable_nn (fit's step)", "numpy by hand", "GEMM only (8 matmuls)"
    ]
    assert len(names_a) == 4 + len(INSTALLED) + ("jax" in INSTALLED)  # JAX: its jit and portable_nn on it
    assert data["cases"]["a"]["rows"][0]["faults_per_step"] is not None
    n_a, n_b = 3 + 3 * ("jax" in INSTALLED), 4 + 2 * ("jax" in INSTALLED)  # plus portable_nn on JAX's
    assert len(data["cases"]["a"]["targets"]) == n_a and len(data["cases"]["b"]["targets"]) == n_b
    assert all(r["loss_dev"] < 1e-3 for r in data["cases"]["a"]["rows"] if r.get("loss_dev") is not None)
    assert all(r["loss_dev"] < 1e-6 for r in data["cases"]["b"]["rows"] if r.get("loss_dev") is not None)
    assert [t["case"] for t in data["targets"]] == ["a"] * n_a + ["b"] * n_b + ["e"]
    rows_e = data["cases"]["e"]["rows"]
    assert [r.get("epoch") for r in rows_e] == [None, 1, 2, 3, None]
    assert all(_positive_finite(r["rss_mib"]) and _positive_finite(r["peak_mib"]) for r in rows_e)
    text = report.table()
    assert "targets" in text and "portable_nn (compile_step)" in text


@pytest.mark.skipif(not HAS_SKLEARN, reason="the digits case needs scikit-learn")
def test_bench_digits_tiny_numpy_only() -> None:
    report = run_bench(["c"], profile="tiny", libraries=[], isolate=False, progress=False)
    case = report.as_dict()["cases"]["c"]
    _check_case(case, "c")
    assert {r["name"] for r in case["rows"]} == {
        "portable_nn (pnn.fit)", "numpy by hand", "portable_nn SGD (pnn.fit)", "numpy by hand SGD"
    }
    assert all(0 <= r["accuracy"] <= 1 for r in case["rows"])
    assert "sklearn MLPClassifier" in case["skipped"] and "torch eager" in case["skipped"]
    assert case["targets"][0]["met"] is None  # sklearn not run


@pytest.mark.skipif(not HAS_SKLEARN or "jax" not in INSTALLED, reason="needs scikit-learn and JAX")
def test_bench_digits_tiny_runs_fit_on_jax_with_its_own_targets() -> None:
    report = run_bench(["c"], profile="tiny", libraries=["jax"], isolate=False, progress=False)
    case = report.as_dict()["cases"]["c"]
    _check_case(case, "c")
    rows = {r["name"]: r for r in case["rows"]}
    on_jax = rows["portable_nn on jax (pnn.fit: compiled epochs)"]
    assert _positive_finite(on_jax["median_s"])
    # the same initial weights, data and step: one epoch reaches the NumPy path's accuracy
    assert abs(on_jax["accuracy"] - rows["portable_nn (pnn.fit)"]["accuracy"]) <= 0.01
    goals = [t["goal"] for t in case["targets"]]
    assert "portable_nn on JAX within 1.1x of hand-written NumPy" in goals and len(goals) == 10  # 4 of #13
    assert any("compiles the 1-epoch loop" in note for note in case["notes"])


@pytest.mark.skipif(not HAS_SKLEARN, reason="case f times portable_nn.sklearn, which needs scikit-learn")
def test_bench_sklearn_case_tiny() -> None:
    from benchmarks import sklearn_mlp as f

    report = run_bench(["f"], profile="tiny", libraries=["sklearn"], isolate=False, progress=False)
    case = report.as_dict()["cases"]["f"]
    _check_case(case, "f")
    rows = {r["name"]: r for r in case["rows"]}
    assert set(rows) == {f.PNN, f.SKLEARN, f.SKLEARN_32} and rows[f.SKLEARN]["ratio"] == 1.0
    # the same initial weights and batches: one epoch reaches the same test accuracy
    assert abs(rows[f.PNN]["accuracy"] - rows[f.SKLEARN]["accuracy"]) <= 0.01
    assert [t["goal"] for t in case["targets"]] == ["portable_nn >= 2x faster than sklearn MLPClassifier (equal epochs)"]
    assert case["targets"][0]["ratio"] is not None and case["settings"]["max_iter"] == 1


def test_bench_precision_case_tiny_times_half_precision_against_float32_and_measures_memory() -> None:
    report = run_bench(["i"], profile="tiny", libraries=[], isolate=False, progress=False)
    case = report.as_dict()["cases"]["i"]
    _check_case(case, "i")
    rows = {r["name"]: r for r in case["rows"]}
    assert set(rows) == {f"{p} on numpy {d}" for p in ("mlp", "cnn", "gpt") for d in ("float32", "float16")}
    assert all(_positive_finite(r["speedup"]) for r in rows.values())
    assert rows["mlp on numpy float32"]["speedup"] == 1.0
    peaks = case["settings"]["cnn_peak_bytes"]
    assert peaks["float16"] < peaks["float32"]  # the CNN's activations are half the bytes
    assert any("peak memory" in note for note in case["notes"])


def test_bench_gpt_case_tiny_agrees_with_torch_and_jax_by_hand() -> None:
    from benchmarks import gpt_step as j

    report = run_bench(["j"], profile="tiny", libraries=INSTALLED, isolate=False, progress=False)
    case = report.as_dict()["cases"]["j"]
    _check_case(case, "j")
    rows = {r["name"]: r for r in case["rows"]}
    torch_name = next((n for n in rows if n.startswith(j.TORCH)), None)
    expected = {j.PNN} | ({torch_name} if "torch" in INSTALLED else set())
    expected |= {j.JAX, j.PNN_JAX} if "jax" in INSTALLED else set()
    assert set(rows) == expected
    # the same params and text: the same loss after 2 steps in torch (SDPA) and JAX by hand as portable_nn's
    assert all(math.isfinite(r["loss_check"]) and r["loss_dev"] < 1e-4 for r in rows.values())
    assert case["settings"]["attention_bytes"] == 4 * 2 * 16 * 16 * 4 * 2
    assert any("(batch, heads, seq, seq)" in note for note in case["notes"])


def test_bench_cnn_case_tiny() -> None:
    from benchmarks import cnn_step as g

    report = run_bench(["g"], profile="tiny", libraries=INSTALLED, isolate=False, progress=False)
    case = report.as_dict()["cases"]["g"]
    _check_case(case, "g")
    rows = {r["name"]: r for r in case["rows"]}
    torch_name = next((n for n in rows if n.startswith(g.TORCH)), None)
    expected = {g.PNN} | ({torch_name, g.PNN_TORCH} if "torch" in INSTALLED else set())
    expected |= {g.JAX, g.PNN_JAX} if "jax" in INSTALLED else set()
    assert set(rows) == expected
    # the same initial weights and batches: every candidate's loss after 3 steps agrees with NumPy's
    assert all(math.isfinite(r["loss_check"]) and r["loss_dev"] < 1e-3 for r in rows.values())
    if "torch" in INSTALLED:
        assert rows[torch_name]["ratio"] == 1.0 and _positive_finite(rows[g.PNN]["ratio"])
    if "jax" in INSTALLED:
        assert rows[g.JAX]["ratio_jax"] == 1.0 and _positive_finite(rows[g.PNN_JAX]["ratio_jax"])
    targets = {t["goal"]: t for t in case["targets"]}
    assert len(targets) == 5
    speed = [t for goal, t in targets.items() if "within 2x of PyTorch" in goal or "1.2x" in goal]
    assert len(speed) == 2
    assert all((t["ratio"] is None) == (t["met"] is None) for t in speed)
    cols = targets["each conv's im2col buffer at most kernel area x its input (from the shapes)"]
    assert cols["ratio"] == 1.0 and cols["met"] is True  # padding=1, stride 1: exactly kh*kw*X
    memory = case["settings"]["memory"]
    assert [m["layer"] for m in memory["im2col"]] == ["Conv2D(3, 4, 3, padding=1)", "Conv2D(4, 8, 3, padding=1)"]
    assert all(m["traced_peak_bytes"] >= m["cols_bytes"] > 0 for m in memory["im2col"])
    assert len(memory["rss_per_epoch_mib"]) == memory["fit_epochs"] == 3
    assert all(_positive_finite(r) for r in memory["rss_per_epoch_mib"])


def _check_device_candidate(case: dict, ref: str, tolerance: float) -> None:
    """``portable_nn on DEVICE_SPEC`` ran and agrees with NumPy's ``ref``; no GPU target counts as met."""
    rows = {r["name"]: r for r in case["rows"]}
    on = rows[f"portable_nn on {DEVICE_SPEC}"]
    assert _positive_finite(on["median_s"])
    assert math.isfinite(on["loss_check"]) and math.isfinite(rows[ref]["loss_check"])
    assert abs(on["loss_check"] - rows[ref]["loss_check"]) <= tolerance * abs(rows[ref]["loss_check"])
    gpu = [t for t in case["targets"] if "PyTorch eager CUDA" in t["goal"]]
    assert gpu and all(t["met"] is None and t["ratio"] is None for t in gpu), gpu


def test_bench_device_backend_dry_run() -> None:
    # cupy is skipped where it is not installed; torch is not selected, so its CUDA candidate never runs
    specs = [DEVICE_SPEC, "cupy"]
    report = run_bench(
        ["a", "b", "g"], profile="tiny", libraries=[], isolate=False, progress=False, device_backends=specs
    )
    data = report.as_dict()
    assert data["settings"]["device_backends"] == specs
    for key, ref, tolerance in (
        ("a", "portable_nn (compile_step)", 1e-3),
        ("b", "portable_nn (apply/loss/backprop/step)", 1e-6),
        ("g", "portable_nn (compile_step)", 1e-3),
    ):
        case = data["cases"][key]
        _check_case(case, key)
        assert case["settings"]["device_backends"] == specs
        _check_device_candidate(case, ref, tolerance)
        assert any("(cuda)" in name for name in case["skipped"])
    assert data["cases"]["a"]["targets"][-1]["goal"].startswith("portable_nn on cupy within 1.05x")
    assert all(t.met is None for _, t in report.targets if "CUDA" in t.goal)
    assert "not run" in report.summary()


def test_bench_child_process_takes_device_backends(tmp_path) -> None:
    from benchmarks.child import main

    out = tmp_path / "b.json"
    argv = ["--case", "b", "--profile", "tiny", "--libraries", "-", "--progress", "off"]
    assert main([*argv, "--device-backend", DEVICE_SPEC, "--out", str(out)]) == 0
    case = json.loads(out.read_text())
    _check_case(case, "b")
    _check_device_candidate(case, "portable_nn (apply/loss/backprop/step)", 1e-6)


def test_bench_case_runs_in_its_own_process() -> None:
    report = run_bench(["e"], profile="tiny", libraries=[], progress=False)
    assert report.settings["isolated_processes"] is True
    _check_case(report.as_dict()["cases"]["e"], "e")


def test_bench_command_line() -> None:
    args = build_parser().parse_args(["--quick", "--cases", "a,c", "--backends", "numpy,torch"])
    assert args.quick and args.cases == ["a", "c"] and args.backends == ["torch"] and args.isolate
    assert args.device_backends == []
    assert build_parser().parse_args([]).cases == list(DEFAULT_CASES) and "h" not in DEFAULT_CASES
    args = build_parser().parse_args(["--device-backend", "cupy,torch:cuda", "--device-backend", "jax:gpu"])
    assert args.device_backends == ["cupy", "torch:cuda", "jax:gpu"]
    for bad in (["--device-backend", "cupy,"], ["--cases", "a,z"], ["--backends", "tensorflow"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)


def test_bench_help_lists_every_case_on_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert set(CASES) >= {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
    for key, case in CASES.items():
        assert any(line.startswith(f"  {key}  {case.summary}") for line in lines), key
        assert case.module.KEY == key


def test_benchmarks_are_not_in_the_package() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = "import portable_nn, sys; print(sorted(m for m in sys.modules if m.startswith('benchmarks')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    package = Path(__file__).resolve().parents[1] / "portable_nn"
    assert not [p for p in package.rglob("*.py") if "bench" in p.name or "bench" in p.parent.name]


def test_time_interleaved_is_round_robin_and_per_unit() -> None:
    from benchmarks._interleaved import Candidate, time_interleaved

    log: list[str] = []

    def make(name: str) -> Candidate:
        return Candidate(
            name, lambda: log.append(name), None, reset=lambda: log.append(f"reset {name}"), units=2
        )

    timings = time_interleaved([make("x"), make("y"), make("z")], repeats=3, warmup=1, calls=2)
    timed = [e for e in log[log.index("reset z") + 2 :] if not e.startswith("reset")]
    # warm-up once each, then repeat r runs the candidates rotated by r, two calls per block
    assert timed == ["x", "x", "y", "y", "z", "z", "y", "y", "z", "z", "x", "x", "z", "z", "x", "x", "y", "y"]
    assert list(timings) == ["x", "y", "z"]
    assert all(t.steps == 4 and len(t.per_step) == 3 for t in timings.values())
