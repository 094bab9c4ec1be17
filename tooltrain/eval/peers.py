"""Time to decision against a peer: the project's `Decider` and llama.cpp on the same GGUF, question by question.

Two workers (tooltrain.lockstep), asked in turn (who goes first alternates):

- mlx:   the benchmark's path (tooltrain.eval.decoding.Decider on the float32 copy of the base, OpenBLAS):
         the shared system + tools + workspace-map prefix prefilled once into mlx-lm's prompt cache, each
         question prefilling its own tokens, greedy with prompt-lookup drafts, trimmed back after;
- llama: llama-cpp-python on the GGUF the base was converted from (its Q4_1 kernels, 2 threads), in
         `.venv-peers`: the same prefix evaluated once and kept in llama.cpp's KV cache, each question
         evaluated after it (`n_tokens` set back to the prefix, as `Llama.generate` itself rewinds to a
         common prefix), greedy (`temp=0`), one token per pass.

Both get the same prompt tokens (rendered once by the MLX side with the project's chat template and
tokenizer) and stop the same way (tooltrain.eval.decoding.Progress: a complete call, or a few tokens
past a direct decision); the time to decision is from the question's first token in to the token that
settles grep/read/direct. The base model on both sides (no adapter). Where llama.cpp is faster, both
also time one question's prefill and single-token passes: what a pass costs on each side.

Run as a worker: `python -m tooltrain.eval.peers mlx|llama`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from ..blas import reexec_with_optimized_blas
from ..lockstep import Worker, serve, side_by_side
from ..paths import PROJECT_ROOT
from .decoding import Progress
from .scoring import read_output


def _passes(forward, tail: list[int], count: int) -> dict:
    """Seconds of one prefill of `tail` after the prefix, and the median of `count` one-token passes after it
    (`forward(tokens)` computes the logits of the tokens' last position and returns when they are there)."""
    started = time.perf_counter()
    forward(tail)
    prefill_s, steps = time.perf_counter() - started, []
    for _ in range(count):
        started = time.perf_counter()
        forward(tail[-1:])
        steps.append(time.perf_counter() - started)
    return {"prefill_tokens": len(tail), "prefill_s": round(prefill_s, 4),
            "one_token_pass_s": round(statistics.median(steps), 4)}


class MlxDecisions:
    """The benchmark's Decider on the base model, over the eval set's workspace."""

    OPS = ("setup", "decide", "passes")

    def setup(self, model: str, eval_file: str, roots: list[str], questions: int, max_tokens: int,
              max_answer_tokens: int) -> dict:
        from .. import workspace
        from .benchmark import ModelSpec, load_model, spread
        from .decoding import Decider, context_messages
        from .scoring import load_cases

        net, tokenizer, loaded = load_model(ModelSpec("base", model))
        cases = spread(load_cases(Path(eval_file)), questions)
        workspace_map = workspace.render_map(workspace.scan_roots([Path(r) for r in roots]))
        self.decider = Decider(net, tokenizer, context_messages(workspace_map), max_tokens, max_answer_tokens)
        self.questions = [case.question for case in cases]
        return {"loaded": loaded, "prefix": self.decider.prefix, "prompts": [self.decider.prompt(q) for q in self.questions],
                "cases": [case.id for case in cases], "expected": [case.expected for case in cases],
                "stop": sorted(self.decider.stop_tokens), "tokenizer": model}

    def decide(self, index: int) -> dict:
        out = self.decider.decide(self.questions[index])
        return {"time_to_decision_s": out["time_to_decision_s"], "gen_time_s": out["gen_time_s"], "ids": out["ids"],
                "passes": out["passes"], "decision": read_output(out["raw"]).decision}

    def passes(self, tail: list[int], count: int = 8) -> dict:
        import mlx.core as mx
        from mlx_lm.models.cache import trim_prompt_cache

        model, cache = self.decider.model, self.decider.cache

        def forward(tokens: list[int]) -> None:
            mx.eval(model(mx.array(tokens)[None], cache=cache)[0, -1])

        timed = _passes(forward, tail, count)
        trim_prompt_cache(cache, cache[0].offset - len(self.decider.prefix))
        return timed


class LlamaDecisions:
    """llama-cpp-python on the GGUF: the prefix once in its KV cache, greedy decoding after it."""

    OPS = ("setup", "decide", "passes")

    def setup(self, gguf: str, tokenizer: str, prefix: list[int], stop: list[int], max_tokens: int,
              max_answer_tokens: int, threads: int = 2, context: int = 4096) -> dict:
        import llama_cpp
        from transformers import AutoTokenizer

        self.llm = llama_cpp.Llama(model_path=gguf, n_ctx=context, n_threads=threads, n_threads_batch=threads,
                                   n_batch=512, verbose=False)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)  # decodes for Progress, as mlx-lm's wrapper does
        self.prefix, self.stop = list(prefix), set(stop)
        self.max_tokens, self.max_answer_tokens = max_tokens, max_answer_tokens
        self.llm.eval(self.prefix)
        return {"llama_cpp": llama_cpp.__version__, "threads": threads, "context": context,
                "system_info": llama_cpp.llama_print_system_info().decode().strip()}

    def _rewind(self, prompt: list[int]) -> list[int]:
        """Back to the shared prefix (llama.cpp drops the KV cells after `n_tokens` on the next eval); the rest."""
        if prompt[: len(self.prefix)] != self.prefix:
            raise ValueError("the prompt does not start with the shared prefix")
        self.llm.n_tokens = len(self.prefix)
        return prompt[len(self.prefix):]

    def decide(self, prompt: list[int]) -> dict:
        tail = self._rewind(prompt)
        progress, ids, passes = Progress(self.tokenizer, self.max_answer_tokens), [], 0
        started = time.perf_counter()
        for token in self.llm.generate(tail, temp=0.0, repeat_penalty=1.0, reset=False):
            passes += 1
            if token in self.stop:
                break
            ids.append(token)
            if len(ids) >= self.max_tokens or progress.done(ids):
                break
        took = time.perf_counter() - started
        decided = progress.decided_at - started if progress.decided_at is not None else took
        return {"time_to_decision_s": decided, "gen_time_s": took, "ids": ids, "passes": passes,
                "decision": read_output(self.tokenizer.decode(ids)).decision}

    def passes(self, tail: list[int], count: int = 8) -> dict:
        self._rewind(self.prefix + tail)
        return _passes(self.llm.eval, tail, count)


def compare(mlx_python: str, peer_python: str, gguf: Path, setting: dict, repeats: int = 2) -> dict:
    """Each question to both workers in turn, `repeats` times over, after one untimed question each."""
    root = str(PROJECT_ROOT)
    with Worker("mlx", mlx_python, __name__, "mlx", cwd=root) as ours, \
            Worker("llama", peer_python, __name__, "llama", cwd=root) as peer:
        print("decisions: loading both models ...", file=sys.stderr, flush=True)
        info = ours.ask("setup", **setting)
        peer_info = peer.ask("setup", gguf=str(gguf), tokenizer=info["tokenizer"], prefix=info["prefix"],
                             stop=info["stop"], max_tokens=setting["max_tokens"],
                             max_answer_tokens=setting["max_answer_tokens"])
        prompts = info.pop("prompts")
        ours.ask("decide", index=0)
        peer.ask("decide", prompt=prompts[0])
        runs = {"mlx": [], "llama": []}
        for turn in range(repeats):
            for index, prompt in enumerate(prompts):
                asks = [(ours, {"index": index}), (peer, {"prompt": prompt})]
                for worker, args in asks if (index + turn) % 2 == 0 else asks[::-1]:
                    runs[worker.name].append(worker.ask("decide", **args))
            print(f"decisions: round {turn + 1}/{repeats} done", file=sys.stderr, flush=True)
        first, prefix = (runs["mlx"][: len(prompts)], runs["llama"][: len(prompts)]), len(info.pop("prefix"))
        result = {"setting": {**setting, "repeats": repeats}, "prefix_tokens": prefix, "mlx": info, "llama": peer_info,
                  "question_tokens_mean": round(statistics.fmean(len(p) - prefix for p in prompts), 1),
                  "same_decision": sum(a["decision"] == b["decision"] for a, b in zip(*first)),
                  "same_tokens": sum(a["ids"] == b["ids"] for a, b in zip(*first)),
                  "decisions": [{"case": case, "expected": expected, "mlx": a["decision"], "llama": b["decision"],
                                 "mlx_passes": a["passes"], "llama_passes": b["passes"]}
                                for case, expected, a, b in zip(info["cases"], info["expected"], *first)],
                  "time_to_decision": side_by_side([r["time_to_decision_s"] for r in runs["mlx"]],
                                                   [r["time_to_decision_s"] for r in runs["llama"]]),
                  "generation": side_by_side([r["gen_time_s"] for r in runs["mlx"]],
                                             [r["gen_time_s"] for r in runs["llama"]])}
        if result["time_to_decision"]["peer_over_ours_mean"] < 1:
            tail = prompts[0][result["prefix_tokens"]:]
            result["passes"] = {worker.name: worker.ask("passes", tail=tail) for worker in (ours, peer)}
    return result


def report(result: dict) -> list[str]:
    t, g, n = result["time_to_decision"], result["generation"], len(result["decisions"])
    lines = [f"time to decision, {n} questions x {result['setting']['repeats']} (base model, "
             f"{result['prefix_tokens']}-token shared prefix cached), in turn:",
             f"  project Decider (MLX)   mean {t['ours_mean_s']:.3f} s, median {t['ours_median_s']:.3f} s "
             f"(whole answer {g['ours_mean_s']:.3f} s)",
             f"  llama.cpp (Q4_1 GGUF)   mean {t['peer_mean_s']:.3f} s, median {t['peer_median_s']:.3f} s "
             f"(whole answer {g['peer_mean_s']:.3f} s)",
             f"  llama.cpp / Decider: {t['peer_over_ours_mean']:.2f}x the time (median of pairs "
             f"{t['peer_over_ours_median_pair']:.2f}x)",
             f"  same decision {result['same_decision']}/{n}, same tokens {result['same_tokens']}/{n}"]
    if passes := result.get("passes"):
        lines.append("  llama.cpp is faster; what a pass costs (one question's prefill, then one token at a time):")
        lines += [f"    {name:<6} prefill of {p['prefill_tokens']} tokens {1000 * p['prefill_s']:.1f} ms, "
                  f"a one-token pass {1000 * p['one_token_pass_s']:.1f} ms" for name, p in passes.items()]
        mean = lambda side: statistics.fmean(d[f"{side}_passes"] for d in result["decisions"])
        lines.append(f"    passes per answer: Decider {mean('mlx'):.1f} (prompt-lookup drafts), llama.cpp {mean('llama'):.1f}")
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "mlx":
        reexec_with_optimized_blas()
    serve({"mlx": MlxDecisions, "llama": LlamaDecisions}[sys.argv[1]]())
