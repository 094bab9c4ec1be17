"""The data stage: pinned repositories -> AST facts -> verified examples -> Phase 5/6/7 splits, each with a data card."""
