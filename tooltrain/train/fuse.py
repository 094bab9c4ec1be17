"""Phase 5 fused-8bit: the Phase 5 adapter fused into its base, then quantized to 8 bits.

Fusing is mlx-lm's own `mlx_lm fuse` (dequantized, so the result is plain weights);
quantizing is mlx-lm's `convert`. The result loads like any mlx-lm model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ..model_folders import build_model_folder
from .record import RECORD_FILE


def fuse_and_quantize(adapter_dir: Path, out: Path, bits: int = 8, group_size: int = 32) -> Path:
    """Fuse `adapter_dir` into the base it was trained on and quantize the result into `out`."""
    from mlx_lm.convert import convert

    record_path = Path(adapter_dir) / RECORD_FILE
    if not record_path.exists():
        raise FileNotFoundError(f"{record_path} is missing: train the adapter first (make phase5)")
    record = json.loads(record_path.read_text())
    trained_on = record["model"]  # on a CPU this is the float32 copy the adapter was trained against

    def fill(folder: Path) -> None:
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as scratch:
            fused = Path(scratch) / "fused"
            cmd = [sys.executable, "-m", "mlx_lm", "fuse", "--model", trained_on, "--adapter-path",
                   str(adapter_dir), "--save-path", str(fused), "--dequantize"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"mlx_lm fuse failed:\n{done.stderr[-2000:]}")
            convert(hf_path=str(fused), mlx_path=str(folder), quantize=True, q_bits=bits, q_group_size=group_size)

    return build_model_folder(Path(out), fill, record.get("base_model", trained_on),
                              {"adapter": str(adapter_dir), "trained_on": trained_on, "bits": bits,
                               "group_size": group_size, "adapter_best_iteration": record.get("best_iteration")})
