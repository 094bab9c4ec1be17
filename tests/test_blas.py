"""BLAS detection, the OpenBLAS environment builder, and a child process that really runs on it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tooltrain import blas
from tooltrain.paths import PROJECT_ROOT

OPENBLAS = blas.find_openblas({})
needs_openblas = pytest.mark.skipif(
    sys.platform != "linux" or OPENBLAS is None,
    reason=f"needs Linux with OpenBLAS installed: {blas.INSTALL_HINT}",
)

SKYLAKEX = {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"}
ZEN3 = {"fpu", "sse2", "avx", "avx2", "fma", "bmi2", "sha_ni", "vaes"}
NEHALEM = {"fpu", "sse2", "sse4_1", "sse4_2", "popcnt"}


def test_detect_names_a_known_library_in_this_process():
    info = blas.detect()
    assert info.blas in blas.KNOWN_BLAS, info
    if sys.platform == "linux":
        assert info.blas_path and os.path.exists(info.blas_path)
        assert info.device.startswith("Device(")


@pytest.mark.parametrize("flags, core", [(SKYLAKEX, "SkylakeX"), (ZEN3, "Haswell"), (NEHALEM, None),
                                         ({"avx512f", "avx2", "fma"}, "Haswell"), (set(), None)])
def test_coretype_from_cpu_flags(flags, core):
    assert blas.coretype_for(flags) == core


def test_cpu_flags_reads_the_flags_line(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert blas.cpu_flags(str(tmp_path / "cpuinfo")) == {"fpu", "avx2", "fma"}
    assert blas.cpu_flags(str(tmp_path / "absent")) == frozenset()


def test_env_picks_core_keeps_caller_choices_and_other_preloads(tmp_path):
    lib = tmp_path / "libopenblas.so.0"
    lib.write_bytes(b"")
    env = blas.optimized_env({"TOOLTRAIN_OPENBLAS": str(lib), "LD_PRELOAD": "/x/libfoo.so"}, flags=SKYLAKEX,
                             system="Linux", verify=False)
    assert env.optimized and env.library == str(lib)
    assert env.vars["LD_PRELOAD"] == f"{lib}:/x/libfoo.so"
    assert env.vars["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert int(env.vars["OPENBLAS_NUM_THREADS"]) >= 1
    assert "SkylakeX" in env.reason and str(lib) in env.reason

    mine = blas.optimized_env({"TOOLTRAIN_OPENBLAS": str(lib), "OPENBLAS_CORETYPE": "Zen", "OPENBLAS_NUM_THREADS": "1"},
                              flags=SKYLAKEX, system="Linux", verify=False)
    assert (mine.vars["OPENBLAS_CORETYPE"], mine.vars["OPENBLAS_NUM_THREADS"]) == ("Zen", "1")

    old_cpu = blas.optimized_env({"TOOLTRAIN_OPENBLAS": str(lib)}, flags=NEHALEM, system="Linux", verify=False)
    assert "OPENBLAS_CORETYPE" not in old_cpu.vars and "auto" in old_cpu.reason


def test_env_is_empty_with_a_reason_when_nothing_can_be_used(tmp_path):
    none = blas.optimized_env({}, flags=ZEN3, system="Linux", candidates=())
    assert not none.optimized and none.vars == {} and none.words() == []
    assert "no OpenBLAS" in none.reason and "apt-get install" in none.reason

    mac = blas.optimized_env({}, system="Darwin")
    assert not mac.optimized and "Metal" in mac.reason

    missing = blas.optimized_env({"TOOLTRAIN_OPENBLAS": str(tmp_path / "nope.so")}, system="Linux")
    assert not missing.optimized and "does not exist" in missing.reason


@pytest.mark.skipif(sys.platform != "linux", reason="the probe loads a Linux shared object")
def test_a_library_that_fails_the_probe_is_not_handed_out(tmp_path):
    junk = tmp_path / "libopenblas.so.0"
    junk.write_bytes(b"not an ELF file")
    env = blas.optimized_env({"TOOLTRAIN_OPENBLAS": str(junk)}, flags=ZEN3, system="Linux")
    assert not env.optimized and "unusable" in env.reason


def test_classify_library_paths():
    assert blas.classify("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3") == "openblas"
    assert blas.classify("/site-packages/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0") == "reference"
    assert blas.classify("/opt/intel/lib/libmkl_rt.so.2") == "mkl"
    assert blas.classify("/System/Library/Frameworks/Accelerate.framework/Versions/A/Accelerate") == "accelerate"
    assert blas.classify("/usr/lib/libc.so.6") == "unknown"


@needs_openblas
def test_openblas_measures_several_times_the_stock_gflops():
    """The BLAS trap, measured: the same matmul in a stock child (MLX's bundled reference BLAS, ~4 GFLOP/s
    here) and in one with the OpenBLAS environment (~40-200)."""
    stock = blas.child_report({"LD_PRELOAD": ""}, repeats=3)
    fast = blas.child_report(blas.optimized_env().vars, repeats=3)
    assert (stock["blas"], fast["blas"]) == ("reference", "openblas")
    assert fast["gflops"] > 3 * stock["gflops"], (stock["gflops"], fast["gflops"])


@needs_openblas
def test_child_with_the_env_runs_mlx_on_openblas():
    env = blas.optimized_env()
    assert env.optimized, env.reason
    child = blas.child_report(env.vars, gflops=False)
    assert child["blas"] == "openblas", child
    assert "openblas" in os.path.realpath(child["blas_path"])
    if env.coretype:
        assert child["openblas_core"].lower() == env.coretype.lower()


@needs_openblas
def test_exec_cli_says_which_path_and_runs_the_command_on_openblas():
    code = "from tooltrain.blas import detect; print(detect().blas)"
    r = subprocess.run([sys.executable, "-m", "tooltrain.blas", "exec", "--", sys.executable, "-c", code],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "openblas"
    assert "OpenBLAS preloaded" in r.stderr


def test_env_cli_prints_words_for_env():
    r = subprocess.run([sys.executable, "-m", "tooltrain.blas", "env"], cwd=PROJECT_ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr.startswith("tooltrain.blas: ")
    words = r.stdout.split()
    assert all("=" in w for w in words)
    assert bool(words) == blas.optimized_env().optimized


@pytest.mark.skipif(sys.platform != "linux", reason="mlx[cpu] with its bundled BLAS is the Linux build")
def test_exec_without_openblas_runs_stock_and_says_so_or_refuses_with_require(tmp_path):
    env = {**os.environ, "TOOLTRAIN_OPENBLAS": str(tmp_path / "nope.so")}
    env.pop("LD_PRELOAD", None)
    code = "from tooltrain.blas import detect; print(detect().blas)"
    cmd = [sys.executable, "-m", "tooltrain.blas", "exec"]
    r = subprocess.run([*cmd, "--", sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reference" and "does not exist" in r.stderr
    r = subprocess.run([*cmd, "--require", "--", sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""


def test_doctor_reports_every_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scripts.doctor", "--repeats", "1", "--model", str(tmp_path / "m")],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    heads = [line.split()[0] for line in r.stdout.splitlines() if line[:1].strip()]
    assert heads[:5] == ["platform", "mlx", "device", "BLAS", "GFLOP/s"]
    assert f"{tmp_path / 'm'} (missing)" in r.stdout
    if blas.optimized_env().optimized:
        assert "BLAS child    openblas" in r.stdout


@needs_openblas
@pytest.mark.skipif("avx512f" in blas.cpu_flags(), reason="needs a CPU without AVX-512 to see SkylakeX kernels fail")
def test_a_core_type_this_cpu_cannot_run_falls_back_to_autodetection():
    env = blas.optimized_env(flags=SKYLAKEX)  # as if the flags lied: SkylakeX kernels die with SIGILL here
    assert env.optimized and env.coretype is None and "OPENBLAS_CORETYPE" not in env.vars
    assert "SkylakeX failed" in env.reason and "signal 4" in env.reason
