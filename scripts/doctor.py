"""Report what training will run on: platform, MLX device, live BLAS and its speed, the model.

Reads the model folder (checks its files, loads nothing); writes nothing. A folder that is there but
unusable (a garbage config.json, no weights, ...) is named on the model line, and the exit code is 1.
On Linux it measures float32 matmul GFLOP/s twice, in this process (stock
unless you started it preloaded) and in a child run with the optimized BLAS
environment, so the ratio shows side by side.

    python -m scripts.doctor [--model data/models/smollm2-135m-instruct] [--repeats 10]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from tooltrain import blas, cli, model_folders
from tooltrain.paths import DEFAULT_MODEL_DIR



def _blas_line(info: dict) -> str:
    core = f", core {info['openblas_core']}" if info.get("openblas_core") else ""
    return f"{info['blas']}{core}  ({info['blas_path']}; {info['how']})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="mlx-lm model folder (default: %(default)s)")
    ap.add_argument("--repeats", type=cli.positive, default=10, help="timed matmuls per measurement; the median counts")
    ap.add_argument("--no-child", action="store_true", help="skip the child run with the optimized BLAS")
    args = ap.parse_args(argv)

    import mlx.core as mx

    here = blas.detect()
    here.gflops = blas.measure_gflops(repeats=args.repeats)
    print(f"platform      {platform.system()} {platform.machine()}, Python {platform.python_version()}, {blas.cpu_count()} CPUs")
    print(f"mlx           {mx.__version__}")
    print(f"device        {here.device} (metal available: {here.metal})")
    print(f"BLAS here     {_blas_line(vars(here))}")
    print(f"GFLOP/s here  {here.gflops:.1f}  (float32 512x576 @ 576x1536, median of {args.repeats})")

    plan = blas.optimized_env()
    print(f"optimized env {' '.join(plan.words()) or '(none)'}")
    print(f"              {plan.reason}")
    if plan.optimized and not args.no_child:
        child = blas.child_report(plan.vars, repeats=args.repeats)
        print(f"BLAS child    {_blas_line(child)}")
        print(f"GFLOP/s child {child['gflops']:.1f}  ({child['gflops'] / here.gflops:.1f}x this process)")

    state, code = _model_state(args.model)
    print(f"model         {args.model} ({state})")
    return code


def _model_state(model: Path) -> tuple[str, int]:
    """What the model folder holds, and the exit code: a broken folder is 1, a missing one 0 (make model)."""
    if not model.exists():
        return "missing", 0
    try:
        quant = model_folders.check_folder(model).get("quantization")
        if quant is not None and not (isinstance(quant, dict) and isinstance(quant.get("bits"), int)):
            raise model_folders.ModelError(f"{model / 'config.json'}: 'quantization' has no whole number 'bits'")
    except model_folders.ModelError as err:
        return f"unusable: {err}", 1
    # Quantized and bfloat16 matmuls never reach BLAS on a CPU; float32 ones do.
    return (f"present, {quant['bits']}-bit quantized" if quant else "present, not quantized"), 0


if __name__ == "__main__":
    sys.exit(main())
