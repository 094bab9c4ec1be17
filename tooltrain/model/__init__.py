"""The model stage: the embedded base model, converted once from its GGUF into an mlx-lm folder."""
