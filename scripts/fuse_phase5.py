"""Phase 5 fused-8bit: fuse adapters_phase5/ into its base and quantize to 8 bits.

Reads  adapters_phase5/ (adapters.safetensors, adapter_config.json, training_record.json)
Writes data/models/phase5-fused-8bit/ (an mlx-lm model folder; provenance.json last)

Run from the project root:
    python -m scripts.fuse_phase5 [--adapter-path adapters_phase5] [--out data/models/phase5-fused-8bit]
"""

import argparse
from pathlib import Path

from tooltrain import cli, paths
from tooltrain.train.fuse import fuse_and_quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter-path", type=Path, default=paths.PROJECT_ROOT / "adapters_phase5")
    parser.add_argument("--out", type=Path, default=paths.MODELS / "phase5-fused-8bit")
    parser.add_argument("--bits", type=int, default=8)
    args = parser.parse_args()
    out = fuse_and_quantize(args.adapter_path, args.out, args.bits)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB, {args.bits}-bit)")


if __name__ == "__main__":
    cli.run(main)
