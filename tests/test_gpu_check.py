"""bench/gpu_check.py cannot rot: its --dry-run (the same code on the CPU, tiny sizes) runs here.

The real run needs a CUDA GPU; these tests check that every section produces numbers, that the
correctness verdict and the time guard are live, and that one failing variant leaves the rest.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve the script's string annotations through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_dry_run_writes_every_section_with_numbers(tmp_path):
    out = tmp_path / "gpu_check"
    done = run_script("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["meta"]["dry_run"] is True
    assert is_number(report["meta"]["peaks_tflops"]["bf16"])

    correctness = report["correctness"]
    assert correctness["passed"] is True
    assert {r["precision"] for r in correctness["rows"]} == {"fp32 (TF32 off)", "bf16 autocast"}
    for row in correctness["rows"]:
        assert row["passed"] is True and is_number(row["logits_rel_err"]) and is_number(row["grads_rel_err"])
        assert "dry run" in row["device"]  # says that "GPU vs CPU" was CPU vs CPU here

    names = [r["variant"] for r in report["training"]]
    assert len(names) == 6 and any(n.startswith("torch-native reference") for n in names)
    assert report["training"][-1]["kind"] == "leaderboard"
    for row in report["training"]:
        assert row["status"] == "ok", row
        for key in ("tokens_per_s", "mfu", "step_ms", "peak_memory_gib", "warmup_s"):
            assert is_number(row[key]) and row[key] >= 0, (row["variant"], key, row.get(key))
        assert row["tokens_per_s"] > 0 and row["losses_finite"]
        if row["compile"] is False and "compile" in row["variant"]:
            assert "eager (dry run)" in row["note"]

    generation = report["generation"]
    assert generation["identical_output"] is True
    for key in ("kv_cache", "no_cache"):
        assert is_number(generation[key]["tokens_per_s"]) and is_number(generation[key]["peak_memory_gib"])

    projection = report["projection"]
    assert projection["tokens"] == 327_680_000
    assert len(projection["rows"]) == 6 and all(is_number(r["minutes"]) for r in projection["rows"])
    assert projection["best_from_scratch"]["variant"] in names

    markdown = (out / "gpu_check.md").read_text()
    assert "not performance figures" in markdown
    for heading in ("## Correctness", "## Training throughput", "## Generation", "## Projection"):
        assert heading in markdown
    assert "| variant | batch x context |" in markdown and "| from-scratch bf16 + compile | 4 x 32 |" in markdown


def test_time_guard_skips_what_does_not_fit_and_still_writes_the_report(tmp_path):
    done = run_script("--dry-run", "--budget-s", "0", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]  # nothing failed: it was skipped
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["correctness"]["status"] == "skipped"
    assert [r["status"] for r in report["training"]] == ["skipped"] * 6
    assert all("budget" in r["note"] for r in report["training"])
    assert report["projection"]["rows"] == [] and report["projection"]["best_from_scratch"] is None
    assert "No from-scratch variant measured" in (tmp_path / "gpu_check.md").read_text()


def test_without_a_gpu_the_real_run_refuses_and_names_the_way_out(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the real run would start")
    done = run_script("--out", str(tmp_path))
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr


def test_one_failing_variant_is_recorded_and_the_rest_still_run(gpu_check, tmp_path, monkeypatch):
    real_build = gpu_check.build_model

    def build(variant, cfg, device):
        if variant.name == "from-scratch bf16 autocast":
            raise RuntimeError("simulated failure")
        return real_build(variant, cfg, device)

    monkeypatch.setattr(gpu_check, "build_model", build)
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)  # the dry run sets 1; the rest of the session keeps its own
    rows = {r["variant"]: r for r in json.loads((tmp_path / "gpu_check.json").read_text())["training"]}
    assert rows["from-scratch bf16 autocast"]["status"] == "failed"
    assert "simulated failure" in rows["from-scratch bf16 autocast"]["note"]
    assert [r["status"] for name, r in rows.items() if name != "from-scratch bf16 autocast"] == ["ok"] * 5


def test_correctness_verdict_follows_the_tolerances(gpu_check, monkeypatch):
    cpu = torch.device("cpu")
    assert gpu_check.check_correctness(gpu_check.DRY, cpu)["passed"] is True
    monkeypatch.setattr(gpu_check, "FP32_RELATIVE_TOLERANCE", 1e-12)  # below fp32 rounding
    monkeypatch.setattr(gpu_check, "BF16_ERROR_RATIO_LIMIT", 0.5)  # below torch's own bf16 error
    result = gpu_check.check_correctness(gpu_check.DRY, cpu)
    assert result["passed"] is False and not any(r["passed"] for r in result["rows"])


def test_relative_error(gpu_check):
    truth = {"a": torch.tensor([3.0, 4.0]), "b": torch.zeros(2)}
    assert gpu_check.relative_error(truth, truth) == 0.0
    assert gpu_check.relative_error({"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0, 0.5])}, truth) == \
        pytest.approx(0.1)
    with pytest.raises(ValueError, match="names"):
        gpu_check.relative_error({"a": truth["a"]}, truth)


@pytest.mark.parametrize("name, bf16, tf32", [
    ("NVIDIA H100 80GB HBM3", 989.0, 494.0),
    ("NVIDIA H200", 989.0, 494.0),
    ("NVIDIA H100 PCIe", 756.0, 378.0),
    ("NVIDIA A100-SXM4-80GB", 312.0, 156.0),
])
def test_peaks_by_device_name(gpu_check, name, bf16, tf32):
    peaks = gpu_check.gpu_peaks(name, None)
    assert (peaks["bf16"], peaks["tf32"]) == (pytest.approx(bf16), pytest.approx(tf32)) and name in peaks["source"]


def test_peaks_of_an_unknown_gpu_need_the_flag(gpu_check):
    unknown = gpu_check.gpu_peaks("Tesla T4", None)
    assert unknown["bf16"] is None and "--peak-tflops" in unknown["source"]
    given = gpu_check.gpu_peaks("Tesla T4", 65.0)
    assert (given["bf16"], given["tf32"]) == (65.0, 32.5) and "--peak-tflops" in given["source"]
    with pytest.raises(ValueError, match="--peak-tflops"):
        gpu_check.gpu_peaks("Tesla T4", 0.0)
