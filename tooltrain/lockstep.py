"""Long-lived worker processes, each asked for one piece of work at a time: peers timed side by side.

Two implementations of the same work (MLX and PyTorch, MLX and llama.cpp) each live in their own
process: their own interpreter (the peers have a venv of their own), their own BLAS, loaded once.
The parent hands them the same pieces in turn (A B A B ...), so the load other processes put on a
shared machine falls on both alike, and each worker times its own work (perf_counter around the
work, not the pipe). A request is one JSON line `{"op": NAME, ...}` on the worker's stdin; the
reply one JSON line on its stdout, `{"error": ...}` if the work raised.

Standard library only: the peers' venv imports this too. A worker starts without the BLAS choice of
its parent (an MLX worker makes its own, `tooltrain.blas.reexec_with_optimized_blas`; PyTorch and llama.cpp
bring theirs).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import traceback

from .blas import ENV_KEYS, REEXEC_MARK


class WorkerError(RuntimeError):
    """A worker that died, or whose work raised."""


class Worker:
    """`python -m MODULE ARGS...` as a worker; `ask(op, **args)` returns its reply."""

    def __init__(self, name: str, python: str, module: str, *args: str, cwd: str | None = None):
        self.name = name
        env = {k: v for k, v in os.environ.items() if k not in (*ENV_KEYS, REEXEC_MARK)}
        self.process = subprocess.Popen([python, "-m", module, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)

    def ask(self, op: str, **args) -> dict:
        try:
            self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died: the empty read below says so
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"{self.name} exited ({self.process.wait()}) during {op!r}; its stderr says why")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.name}: {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(handler) -> None:
    """The worker's side: answer requests from stdin with `handler`'s methods named in `handler.OPS`,
    until stdin closes. Whatever a library prints goes to stderr, never into the replies."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op not in handler.OPS:
                raise ValueError(f"unknown request {op!r} (known: {', '.join(handler.OPS)})")
            reply = getattr(handler, op)(**request)
        except Exception as err:  # reported to the parent, which stops the run
            traceback.print_exc()
            reply = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def side_by_side(ours: list[float], peer: list[float]) -> dict:
    """Mean and median of each side's times, taken in turn, and the peer's over ours (above 1: ours is faster)."""
    if not ours or len(ours) != len(peer):
        raise ValueError(f"paired times expected, got {len(ours)} and {len(peer)}")
    pairs = [p / o for o, p in zip(ours, peer) if o > 0]
    return {"count": len(ours),
            "ours_mean_s": round(statistics.fmean(ours), 4), "ours_median_s": round(statistics.median(ours), 4),
            "peer_mean_s": round(statistics.fmean(peer), 4), "peer_median_s": round(statistics.median(peer), 4),
            "peer_over_ours_mean": round(sum(peer) / sum(ours), 3) if sum(ours) else None,
            "peer_over_ours_median_pair": round(statistics.median(pairs), 3) if pairs else None}
