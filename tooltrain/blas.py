"""Which BLAS MLX runs on, how fast it is, and the environment that swaps in OpenBLAS.

The Linux `mlx[cpu]` wheel links the reference BLAS it bundles (in
`mlx_cpu.libs/`), which does float32 matmul at a few GFLOP/s. libmlx imports
`cblas_sgemm` & co. unversioned, so preloading an OpenBLAS that exports the
same names (Debian's `libopenblas0-pthread`) makes the dynamic linker bind
MLX to it instead: 30-60x faster. PyPI's OpenBLAS wheels do not serve:
`scipy-openblas32` prefixes every symbol (`scipy_cblas_sgemm`), so nothing
interposes, and `cmeel-openblas` is a single-target SkylakeX build that dies
with SIGILL on a CPU without AVX-512.

OpenBLAS picks its kernels from the CPU model it recognises and can miss
newer ones, so the core type is chosen from the CPU's feature flags
(OPENBLAS_CORETYPE); a wrong choice (SkylakeX without AVX-512) kills the
process with SIGILL, which is why the library is probed in a throwaway
child before it is handed out.

Use from the shell (prints on stderr which path it took):

    python -m tooltrain.blas exec -- mlx_lm.lora -c configs/lora_phase5.yaml
    python -m tooltrain.blas env        # KEY=VALUE words for env(1), empty if none
    python -m tooltrain.blas detect --gflops

and from a script that runs MLX, before MLX is loaded: `reexec_with_optimized_blas()`
runs the same command again, once, with OpenBLAS preloaded.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from .paths import PROJECT_ROOT

# The Debian/Ubuntu pthread build first: it is DYNAMIC_ARCH (kernels for every
# x86 generation) and the one `scripts/install_openblas.sh` installs.
DEFAULT_CANDIDATES = (
    "/usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/*-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)
OVERRIDE_VAR = "TOOLTRAIN_OPENBLAS"  # path to a libopenblas of your own; wins over the list
INSTALL_HINT = "apt-get install -y libopenblas0-pthread (or: bash scripts/install_openblas.sh)"
ENV_KEYS = ("LD_PRELOAD", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", OVERRIDE_VAR)
KNOWN_BLAS = ("openblas", "mkl", "blis", "accelerate", "reference")

# OpenBLAS's SkylakeX kernels use AVX-512 F/BW/DQ/VL; Haswell's use AVX2 + FMA3.
SKYLAKEX_FLAGS = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})
HASWELL_FLAGS = frozenset({"avx2", "fma"})


# ---------------------------------------------------------------- CPU and env


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """Feature flags of the first CPU as the kernel reports them (empty if unknown)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def coretype_for(flags: frozenset[str] | set[str]) -> str | None:
    """OPENBLAS_CORETYPE for these CPU flags: SkylakeX, Haswell, or None (let OpenBLAS decide)."""
    if SKYLAKEX_FLAGS <= set(flags):
        return "SkylakeX"
    if HASWELL_FLAGS <= set(flags):
        return "Haswell"
    return None


def cpu_count() -> int:
    """CPUs this process may run on (affinity, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def find_openblas(environ: dict[str, str] | None = None, candidates=DEFAULT_CANDIDATES) -> str | None:
    """Path of an OpenBLAS to preload: $TOOLTRAIN_OPENBLAS if set, else the first candidate found."""
    environ = os.environ if environ is None else environ
    if environ.get(OVERRIDE_VAR):
        return environ[OVERRIDE_VAR]
    for pattern in candidates:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


# Loads the library on its own, runs one 2x2 cblas_sgemm and prints the core
# OpenBLAS chose; a wrong core type dies here (SIGILL), not in the caller.
_PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
F = ctypes.c_float * 4
a, b, c = F(1, 2, 3, 4), F(5, 6, 7, 8), F()
lib.cblas_sgemm(101, 111, 111, 2, 2, 2, ctypes.c_float(1), a, 2, b, 2, ctypes.c_float(0), c, 2)
assert list(c) == [19.0, 22.0, 43.0, 50.0], list(c)
core = getattr(lib, "openblas_get_corename", None)
if core is not None:
    core.restype = ctypes.c_char_p
print(core().decode() if core is not None else "?")
"""


def probe_openblas(path: str, coretype: str | None, timeout: float = 60) -> tuple[bool, str]:
    """Run one sgemm through `path` in a child: (True, core name) or (False, why not)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPENBLAS_CORETYPE")}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, path], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"probe timed out after {timeout:.0f}s"
    if r.returncode == 0:
        return True, r.stdout.strip()
    if r.returncode < 0:
        return False, f"probe killed by signal {-r.returncode} (SIGILL=4: kernels this CPU lacks)"
    last = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"probe failed: {last}"


@dataclass(frozen=True)
class BlasEnv:
    """What to add to a child's environment to run MLX on OpenBLAS, and why.

    `vars` is empty when the stock BLAS stays (not Linux, nothing installed,
    or the probe failed); `reason` says which path was taken in one line.
    """

    vars: dict[str, str]
    reason: str
    library: str | None = None
    coretype: str | None = None

    @property
    def optimized(self) -> bool:
        return bool(self.vars)

    def words(self) -> list[str]:
        """KEY=VALUE words for env(1) or make's $(shell ...)."""
        return [f"{k}={shlex.quote(v)}" for k, v in self.vars.items()]


def optimized_env(
    environ: dict[str, str] | None = None,
    flags: frozenset[str] | set[str] | None = None,
    system: str | None = None,
    candidates=DEFAULT_CANDIDATES,
    verify: bool = True,
) -> BlasEnv:
    """The LD_PRELOAD / OPENBLAS_* variables for a child process, or an empty BlasEnv and why.

    Values the caller already set (OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS,
    other LD_PRELOAD entries) are kept: the command line wins over our guess.
    """
    environ = dict(os.environ if environ is None else environ)
    system = system or platform.system()
    if system == "Darwin":
        return BlasEnv({}, "macOS: MLX runs on Metal and links Accelerate; nothing to preload")
    if system != "Linux":
        return BlasEnv({}, f"{system}: no BLAS preloading here; MLX keeps the BLAS it was built with")
    lib = find_openblas(environ, candidates)
    if lib is None:
        return BlasEnv({}, f"no OpenBLAS installed, so MLX keeps its bundled reference BLAS (float32 matmul ~30x slower); install: {INSTALL_HINT}")
    if not os.path.isfile(lib):
        return BlasEnv({}, f"{OVERRIDE_VAR}={lib} does not exist; MLX keeps its bundled reference BLAS")
    flags = cpu_flags() if flags is None else flags
    user_core = environ.get("OPENBLAS_CORETYPE")
    coretype = user_core or coretype_for(flags)
    why_core = "as set by the caller" if user_core else ("from CPU flags" if coretype else "OpenBLAS autodetects")
    if verify:
        ok, detail = probe_openblas(lib, coretype)
        if not ok and coretype and not user_core:
            ok, detail2 = probe_openblas(lib, None)
            if ok:
                why_core = f"autodetected: OPENBLAS_CORETYPE={coretype} failed ({detail})"
                coretype, detail = None, detail2
        if not ok:
            return BlasEnv({}, f"{lib} is unusable ({detail}); MLX keeps its bundled reference BLAS", lib, coretype)
        why_core += f", OpenBLAS reports core {detail}"
    preload = [p for p in environ.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p and p != lib]
    out = {"LD_PRELOAD": ":".join([lib, *preload])}
    if coretype:
        out["OPENBLAS_CORETYPE"] = coretype
    out["OPENBLAS_NUM_THREADS"] = environ.get("OPENBLAS_NUM_THREADS") or str(cpu_count())
    reason = f"OpenBLAS preloaded: {lib}, core {coretype or 'auto'} ({why_core}), {out['OPENBLAS_NUM_THREADS']} threads"
    return BlasEnv(out, reason, lib, coretype)


# ------------------------------------------------------------ live detection


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _symbol_file(handle: ctypes.CDLL, name: str) -> str | None:
    """File that defines `name` as seen through `handle` (dlsym + dladdr), or None."""
    try:
        addr = ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
    except AttributeError:
        return None
    info = _DlInfo()
    if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def mapped_libraries(maps: str = "/proc/self/maps") -> list[str]:
    """Shared objects mapped into this process, in first-mapped order (Linux; empty elsewhere)."""
    seen: dict[str, None] = {}
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    seen.setdefault(parts[5].strip(), None)
    except OSError:
        pass
    return list(seen)


def classify(path: str | None) -> str:
    """Family of a BLAS library from its (resolved) path: one of KNOWN_BLAS or 'unknown'."""
    if not path:
        return "unknown"
    p = os.path.realpath(path).lower()
    for key, name in (("openblas", "openblas"), ("mkl", "mkl"), ("blis", "blis"),
                      ("accelerate", "accelerate"), ("veclib", "accelerate")):
        if key in p:
            return name
    if "libblas" in os.path.basename(p) or "libcblas" in os.path.basename(p):
        return "reference"
    return "unknown"


@dataclass
class BlasInfo:
    """What this process runs MLX on. `how` says how `blas` was decided."""

    system: str
    machine: str
    mlx_version: str
    device: str
    metal: bool
    blas: str
    blas_path: str | None
    how: str
    openblas_core: str | None = None
    mapped_blas: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    gflops: float | None = None


def _mlx_library() -> str | None:
    for path in mapped_libraries():
        if os.path.basename(path).startswith("libmlx."):
            return path
    return None


def detect() -> BlasInfo:
    """Which BLAS the `cblas_sgemm` MLX calls resolves to in this process.

    The dynamic linker searches the global scope (the program, LD_PRELOAD,
    RTLD_GLOBAL loads) before libmlx's own dependencies, so a global
    `cblas_sgemm` wins; without one MLX uses what libmlx links (its bundled
    BLAS). Libraries merely mapped (numpy's prefixed OpenBLAS) are listed
    but do not count.
    """
    import mlx.core as mx

    system = platform.system()
    metal = bool(getattr(mx, "metal", None) and mx.metal.is_available())
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    path, how = None, ""
    try:
        path = _symbol_file(ctypes.CDLL(None), "cblas_sgemm")
        how = "global cblas_sgemm (interposes over libmlx's own)" if path else ""
        if path is None and (libmlx := _mlx_library()):
            path = _symbol_file(ctypes.CDLL(libmlx, mode=getattr(os, "RTLD_NOLOAD", 0)), "cblas_sgemm")
            how = "libmlx's own dependency" if path else ""
    except OSError as exc:
        how = f"dlsym failed: {exc}"
    path = os.path.normpath(path) if path else None
    blas = classify(path)
    if blas == "unknown" and system == "Darwin":
        blas, how = "accelerate", "assumed: the macOS build of MLX links Accelerate"
    core = None
    if blas == "openblas" and path:
        try:
            fn = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0)).openblas_get_corename
            fn.restype = ctypes.c_char_p
            core = fn().decode()
        except (OSError, AttributeError):
            pass
    mapped = [p for p in mapped_libraries() if classify(p) != "unknown" or "lapack" in p.lower()]
    return BlasInfo(system, platform.machine(), mx.__version__, str(mx.default_device()), metal,
                    blas, path, how or "no cblas_sgemm found", core, mapped, env)


def measure_gflops(m: int = 512, k: int = 576, n: int = 1536, warmup: int = 3, repeats: int = 10, dtype: str = "float32") -> float:
    """Median GFLOP/s of an (m,k)@(k,n) matmul on MLX's default device."""
    import mlx.core as mx

    a = mx.random.normal((m, k)).astype(getattr(mx, dtype))
    b = mx.random.normal((k, n)).astype(getattr(mx, dtype))
    mx.eval(a, b)
    for _ in range(warmup):
        mx.eval(a @ b)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        mx.eval(a @ b)
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def child_report(extra_env: dict[str, str], gflops: bool = True, repeats: int = 10, timeout: float = 300) -> dict:
    """`detect()` (and `measure_gflops()`) in a fresh child run with `extra_env` added."""
    env = {**os.environ, **extra_env}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "tooltrain.blas", "detect", "--json"]
    if gflops:
        cmd += ["--gflops", "--repeats", str(repeats)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"child {' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


# ----------------------------------------------------------------------- CLI


REEXEC_MARK = "TOOLTRAIN_BLAS_CHECKED"


def reexec_with_optimized_blas() -> None:
    """On Linux, run this same command again, once, with an optimized BLAS preloaded when one is usable."""
    if os.environ.get(REEXEC_MARK) or platform.system() != "Linux":
        return
    plan = optimized_env()
    print(f"blas: {plan.reason}", file=sys.stderr, flush=True)  # a note, not output: stdout stays clean for --json
    env = {**os.environ, **plan.vars, REEXEC_MARK: "1"}
    if plan.optimized:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    os.environ[REEXEC_MARK] = "1"


def environment_report(base_note: str) -> dict:
    """Device, BLAS and base-model path of this process, for the training record."""
    import mlx.core as mx

    info = detect()
    return {"device": str(mx.default_device()), "blas": info.blas, "blas_detail": asdict(info),
            "base_path": base_note, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tooltrain.blas", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detect", help="which BLAS this process runs MLX on")
    d.add_argument("--gflops", action="store_true", help="also measure float32 matmul GFLOP/s")
    d.add_argument("--repeats", type=int, default=10)
    d.add_argument("--json", action="store_true")
    e = sub.add_parser("env", help="print KEY=VALUE words for the optimized BLAS (empty if none); reason on stderr")
    e.add_argument("--require", action="store_true", help="exit 2 when no optimized BLAS can be used")
    x = sub.add_parser("exec", help="run a command with the optimized BLAS if there is one")
    x.add_argument("--require", action="store_true", help="exit 2 instead of running on the stock BLAS")
    x.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = ap.parse_args(argv)

    if args.cmd == "detect":
        info = detect()
        if args.gflops:
            info.gflops = round(measure_gflops(repeats=args.repeats), 1)
        if args.json:
            print(json.dumps(asdict(info)))
        else:
            for k, v in asdict(info).items():
                print(f"{k:13} {v}")
        return 0

    plan = optimized_env()
    print(f"tooltrain.blas: {plan.reason}", file=sys.stderr)
    if args.require and not plan.optimized:
        return 2
    if args.cmd == "env":
        print(" ".join(plan.words()))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("exec needs a command after --")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, {**os.environ, **plan.vars})


if __name__ == "__main__":
    sys.exit(main())
