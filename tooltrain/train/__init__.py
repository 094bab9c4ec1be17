"""The training stage: LoRA adapters through mlx-lm's trainer, their record, the fused Phase 5 model."""
