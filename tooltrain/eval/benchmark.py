"""Step 19.6: run eval sets through several models and compare decisions, arguments and speed.

Each eval set comes with the repos root(s) its questions are about: the workspace. Its
map (tooltrain.workspace) is built from those trees, never from the cases, the same
for every question and model. Each model is loaded once; per set, what every question
shares (system prompt, tools, map) is prefilled once into mlx-lm's prompt cache; each
question then prefills only its own tokens and the cache is trimmed back afterwards. Greedy decoding
(with prompt-lookup drafts, same output in fewer passes) stops as soon as a tool
call is complete or the turn ends; a direct answer is cut `max_answer_tokens`
after its decision. The time to decision is when the output first settles grep,
read or direct (for a tool call: once its name is out). A model that is missing or
fails is reported and the others go on; a run in which no model answered a case is an
error (NothingBenchmarked), so nothing is written over earlier results. Every tool call
is run for real by the confined tools. Every rate carries its 95% Wilson interval, and
each model is compared with the one before it on the same cases by an exact McNemar test.

The models named in `guided` are also scored with guided decoding (tooltrain.eval.guided: a call's path
can only be a real path of the set's workspace), beside their raw scores, never instead of them.
Guidance changes an output only where some greedy token was not allowed, so only those cases are
resolved to the one real path they name or else decoded again (the others keep their raw output,
which guided decoding would reproduce); the time guidance adds is measured on the same questions
side by side.

With `batch_size` > 1 the raw pass goes through the model that many questions at a time
(`Decider.decide_batch`: the same greedy tokens). Its wall time per question is throughput, not
latency, so the times per question (Avg Gen Time, time to decision) are then measured on
`latency_questions` cases of each set taken in turn over the labels, one at a time; the log says which is
which.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Collection

from tqdm import tqdm

from .. import paths, workspace
from ..io import write_jsonl
from ..model_folders import ADAPTER_FILE, check_folder, has_accelerator, is_local, training_base
from ..stats import mcnemar
from .decoding import Decider, context_messages
from .guided import PathGuard, decide_searching, folders_under, guided_output, vocabulary_trie
from .scoring import Case, EvalFileError, check_call, load_cases, metrics, read_output



BATCH_SIZE = 32  # questions decoded together: fastest measured here (16: 1.16x slower, 64: as fast, 1.6x the memory)
LATENCY_QUESTIONS = 12  # cases per set timed one at a time when the raw pass is batched


class NothingBenchmarked(RuntimeError):
    """No eval case to ask, or no model that answered one: there is nothing to report."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: str  # mlx-lm folder or hub id
    adapter: str | None = None
    float32_on_cpu: bool = True  # on a CPU, load the float32 copy of a quantized base (what adapters train on)
    workspace_map: bool = True  # shown the workspace map (False: a model trained without one, the ablation)


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: Path
    roots: tuple[Path, ...]  # the workspace: repos roots its cases' repositories are under, searched in order


def default_models(base: str) -> list[ModelSpec]:
    """The spec's five: base, Phase 5, Phase 5 fused-8bit (loaded as it is), Phase 6, Phase 7."""
    root = paths.PROJECT_ROOT
    return [ModelSpec("base", base), ModelSpec("phase5", base, str(root / "adapters_phase5")),
            ModelSpec("phase5-fused-8bit", str(paths.MODELS / "phase5-fused-8bit"), float32_on_cpu=False),
            ModelSpec("phase6", base, str(root / "adapters_phase6")),
            ModelSpec("phase7", base, str(root / "adapters_phase7"))]


def parse_models(names: list[str], base: str, no_map: tuple[str, ...] = ()) -> list[ModelSpec]:
    """Default names, or `name=model[:adapter]` for any other mlx-lm model (loaded as it is); models named in
    `no_map` are shown no workspace map."""
    specs = _parse_models(names, base)
    if unknown := set(no_map) - {spec.name for spec in specs}:
        raise ValueError(f"--no-map {', '.join(sorted(unknown))}: not among the models")
    return [replace(spec, workspace_map=spec.name not in no_map) for spec in specs]


def guided_names(names: list[str] | None, specs: list[ModelSpec]) -> tuple[str, ...]:
    """The models scored guided as well: those named (`all`: every one), by default the last one (Phase 7 in the
    default order, the model `make ask` loads). Guided re-decoding goes one question at a time: for all five
    models it was most of the benchmark's time."""
    known = [spec.name for spec in specs]
    if names is None:
        return tuple(known[-1:])
    if names == ["all"]:
        return tuple(known)
    if unknown := set(names) - set(known):
        raise ValueError(f"--guided-models {', '.join(sorted(unknown))}: not among the models")
    return tuple(names)


def parse_evals(items: list[str], default_roots: list[Path]) -> list[EvalSet]:
    """`PATH` (its repos under `default_roots`) or `PATH=ROOT[,ROOT...]`."""
    sets = []
    for item in items:
        path, _, roots = str(item).partition("=")
        roots = tuple(Path(r) for r in roots.split(",")) if roots else tuple(default_roots)
        sets.append(EvalSet(Path(path).stem, Path(path), roots))
    if len({s.name for s in sets}) != len(sets):
        raise ValueError("two eval files share a name: " + ", ".join(s.name for s in sets))
    return sets


def _parse_models(names: list[str], base: str) -> list[ModelSpec]:
    known = {spec.name: spec for spec in default_models(base)}
    specs = []
    for item in names:
        if item in known:
            specs.append(known[item])
        elif "=" in item:
            name, _, rest = item.partition("=")
            model, _, adapter = rest.partition(":")
            if not name or not model:
                raise ValueError(f"--models {item!r}: expected NAME=MODEL[:ADAPTER]")
            specs.append(ModelSpec(name, model, adapter or None, float32_on_cpu=bool(adapter)))
        else:
            raise ValueError(f"--models {item!r}: not one of {', '.join(known)} and not NAME=MODEL[:ADAPTER]")
    return specs


def examples_behind(spec: ModelSpec) -> int:
    """Training rows (train + valid) behind a model: its adapter's record, or the fused adapter's."""
    adapter = spec.adapter
    provenance = Path(spec.model) / "provenance.json"
    if adapter is None and provenance.exists():
        adapter = json.loads(provenance.read_text()).get("adapter")
    record = Path(adapter or "") / "training_record.json"
    if adapter is None or not record.exists():
        return 0
    return sum(json.loads(record.read_text())["rows"].values())


def size_on_disk(spec: ModelSpec) -> tuple[int, str]:
    """(bytes, what): the adapter file, or for a model with no adapter its weights."""
    if spec.adapter:
        return (Path(spec.adapter) / ADAPTER_FILE).stat().st_size, "adapter"
    folder = Path(spec.model)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")), "model"


def load_model(spec: ModelSpec):
    """(model, tokenizer, what was loaded) — a missing or broken folder raises a clear error."""
    from mlx_lm import load


    if is_local(spec.model):
        check_folder(Path(spec.model))
    if spec.adapter and not (Path(spec.adapter) / ADAPTER_FILE).exists():
        raise FileNotFoundError(f"{spec.adapter}/{ADAPTER_FILE} is missing (train it first: make phase7)")
    weights, note = (training_base(spec.model) if spec.float32_on_cpu else (spec.model, "loaded as it is"))
    model, tokenizer = load(weights, adapter_path=spec.adapter)
    if spec.adapter and fuse_unquantized_adapters(model):
        note += "; adapter fused into the weights in memory"
    if not spec.adapter and dequantize_on_cpu(model):
        note += "; quantized weights dequantized to float32 in memory (CPU: quantized matmuls skip BLAS)"
    return model, tokenizer, f"{weights}{' + ' + spec.adapter if spec.adapter else ''} ({note})"


DEQUANTIZE_LIMIT_BYTES = 4e9


def dequantize_on_cpu(model) -> bool:
    """On a CPU, turn a small quantized model's weights into float32 (mlx-lm's `dequantize_model`):
    the values the quantized kernels compute with, but matmuls that go through BLAS. A 30-token
    question took 4-9 s through 8-bit `quantized_matmul` here against ~0.4 s in float32.
    Models whose float32 weights would pass 4 GB stay quantized."""
    import mlx.nn as nn
    from mlx_lm.utils import dequantize_model


    quantized = [m for _, m in model.named_modules() if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))]
    if has_accelerator() or not quantized:
        return False
    if sum(4 * m.weight.size * 32 // m.bits for m in quantized) > DEQUANTIZE_LIMIT_BYTES:
        return False
    dequantize_model(model)
    return True


def fuse_unquantized_adapters(model) -> bool:
    """Fold LoRA layers over unquantized weights into them (mlx-lm's own `fuse`): the same model with
    one matmul per projection instead of three. Quantized weights keep their adapters (refolding them
    would re-quantize, which changes the model)."""
    import mlx.nn as nn
    from mlx.utils import tree_unflatten

    fusable = [(name, module) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if not fusable or any(isinstance(module.linear, nn.QuantizedLinear) for _, module in fusable):
        return False
    model.update_modules(tree_unflatten([(name, module.fuse()) for name, module in fusable]))
    return True


def repo_root(case: Case, roots: tuple[Path, ...]) -> Path | None:
    """The first repos root holding the case's repo folder (None: missing, or a case with no repo)."""
    if case.repo is None:
        return roots[0] if roots else None
    return next((Path(r) for r in roots if (Path(r) / case.repo).is_dir()), None)


def run_case(decider: Decider, case: Case, roots: tuple[Path, ...]) -> dict:
    """One case decided and checked."""
    return case_record(case, decider.decide(case.question), roots)


def case_record(case: Case, out: dict, roots: tuple[Path, ...]) -> dict:
    """A decider's output for a case, read and checked (times only where the output has them: not batched)."""
    reading = read_output(out["raw"])
    valid, detail = check_call(case, reading, repo_root(case, roots))
    times = {key: round(out[key], 4) for key in ("time_to_decision_s", "gen_time_s") if key in out}
    return {"id": case.id, "decision": reading.decision, "tool_call": reading.tool_call, "raw": out["raw"],
            "ids": out["ids"],
            "expected": case.expected, "valid": valid, "detail": detail, "form": reading.form, **times,
            "tokens": out["tokens"], "passes": out["passes"], "prefix_reused": out["prefix_reused"],
            **{key: out[key] for key in ("retries", "first_raw", "batch_size", "resolved_from") if key in out}}


def score_cases(decider: Decider, cases: list[Case], roots: tuple[Path, ...], desc: str | None = None,
                batch_size: int = 1) -> tuple[list[dict], list[str]]:
    """Every case through the decider, one at a time or `batch_size` at a time (records, in case order), and the
    tool cases skipped because their repo is missing."""
    asked, skipped = [], []
    for case in cases:
        if case.expected != "direct" and repo_root(case, roots) is None:  # nothing to check the call on
            skipped.append(f"{case.id}: repo folder {case.repo!r} not under {', '.join(map(str, roots))}")
        else:
            asked.append(case)
    progress = dict(unit="q", leave=False, disable=desc is None, desc=desc, total=len(asked))
    if batch_size > 1:
        outs = dict(tqdm(decider.decide_batch([case.question for case in asked], batch_size), **progress))
        return [case_record(case, outs[i], roots) for i, case in enumerate(asked)], skipped
    return [run_case(decider, case, roots) for case in tqdm(asked, **progress)], skipped


def latency(decider: Decider, cases: list[Case], count: int) -> dict:
    """Single-stream times on `count` cases taken in turn over the labels (`spread`), each decided alone: what a
    user asking one question waits."""
    outs = [decider.decide(case.question) for case in spread(cases, count)]
    return {"questions": len(outs), **latency_of(outs)} if outs else {}


def guided_records(decider: Decider, cases: list[Case], records: list[dict], roots: tuple[Path, ...],
                   folders: dict[str, Path]) -> list[dict]:
    """The raw records as guided decoding (`decider.guard`, tooltrain.eval.guided.guided_output) has them: a case
    whose greedy tokens the guard lets through and whose grep finds something keeps its record; one whose path
    resolves to a real one gets it ("resolved_from"); the others are decoded again, guided ("guided_rerun").
    `folders`: the workspace folders under `roots` (folders_under)."""
    by_id = {case.id: case for case in cases}
    kept = []
    for record in records:
        case = by_id[record["id"]]
        out = guided_output(record, decider.guard, folders, lambda: decide_searching(decider, case.question, folders))
        kept.append(record if out is record else {**case_record(case, out, roots),
                                                  **({} if "resolved_from" in out else {"guided_rerun": True})})
    return kept


def guided_overhead(raw: Decider, guided: Decider, cases: list[Case], count: int, folders: dict[str, Path]) -> dict:
    """Seconds per question, raw and guided (`guided_output`: the raw decode, then a resolved path or a guided
    decode where needed), on the same tool questions taken in turn (raw, guided, ...)."""
    picked = spread([c for c in cases if c.expected != "direct"], count)
    raw_s = guided_s = 0.0
    for case in picked:
        raw_s += raw.decide(case.question)["gen_time_s"]
        started = time.perf_counter()
        guided_output(raw.decide(case.question), guided.guard, folders,
                      lambda: decide_searching(guided, case.question, folders))
        guided_s += time.perf_counter() - started
    return {"questions": len(picked), "raw_s": round(raw_s, 3), "guided_s": round(guided_s, 3),
            "ratio": round(guided_s / raw_s, 3) if raw_s else None}


def summarize(records: list[dict], skipped: list[str], sample: dict | None = None) -> dict:
    """The metrics, and the times: every record's own (decided one at a time), or else `sample`'s (`latency`)."""
    summary = metrics(records)
    if records and all("gen_time_s" in r for r in records):
        summary.update(latency_sample=None, **latency_of(records))
    elif sample:
        summary.update(latency_sample=sample["questions"], **{k: v for k, v in sample.items() if k != "questions"})
    summary["skipped"] = skipped
    return summary


def latency_of(records: list[dict]) -> dict:
    """Mean time to decision and generation time, and tokens per second, of outputs decided one at a time."""
    gen_time = sum(r["gen_time_s"] for r in records)
    return {"avg_time_to_decision_s": round(sum(r["time_to_decision_s"] for r in records) / len(records), 4),
            "avg_gen_time_s": round(gen_time / len(records), 4),
            "tokens_per_second": round(sum(r["tokens"] for r in records) / gen_time, 1) if gen_time else None}


def compare_with_plain(decider: Decider, cases: list[Case], count: int) -> dict:
    """Time this path against plain one-shot `generate` on the same questions, side by side."""
    picked = spread(cases, count)
    fast, plain, same, same_text = 0.0, 0.0, 0, 0
    for case in picked:
        ours = decider.decide(case.question)
        text, took = decider.plain_generate(case.question)
        fast += ours["gen_time_s"]
        plain += took
        same += read_output(text).decision == read_output(ours["raw"]).decision
        same_text += text.startswith(ours["raw"])  # ours stops earlier, so it is a prefix of the plain output
    return {"questions": len(picked), "this_path_s": round(fast, 3), "plain_generate_s": round(plain, 3),
            "speedup": round(plain / fast, 2) if fast else None, "same_decision": same, "same_text": same_text}


def spread(cases: list[Case], count: int) -> list[Case]:
    """Up to `count` cases taken round-robin over the expected labels, in file order."""
    by_label = {label: [c for c in cases if c.expected == label] for label in ("grep", "read", "direct")}
    picked = []
    while len(picked) < count and any(by_label.values()):
        for label in by_label:
            if by_label[label] and len(picked) < count:
                picked.append(by_label[label].pop(0))
    return picked


def model_info(spec: ModelSpec) -> dict:
    info = {**asdict(spec), "examples": examples_behind(spec)}
    try:
        info["size_bytes"], info["size_of"] = size_on_disk(spec)
    except OSError:
        info["size_bytes"], info["size_of"] = None, None
    return info


def outcomes(records: list[dict]) -> dict[str, tuple[bool, bool]]:
    """Per case id: (right decision, success)."""
    return {r["id"]: (r["expected"] == r["decision"], r["expected"] == r["decision"] and r["valid"] is not False)
            for r in records}


def paired_comparisons(per_model: dict[str, dict[str, tuple[bool, bool]]], order: list[str]) -> list[dict]:
    """Each model against the one before it, on the cases both answered: exact McNemar on accuracy and success."""
    out = []
    for first, second in zip(order, order[1:]):
        if first not in per_model or second not in per_model:
            continue
        ids = sorted(set(per_model[first]) & set(per_model[second]))
        if not ids:
            continue
        row = {"first": first, "second": second, "cases": len(ids)}
        for index, metric in enumerate(("accuracy", "success")):
            a = [per_model[first][i][index] for i in ids]
            b = [per_model[second][i][index] for i in ids]
            row[metric] = {"first": round(sum(a) / len(ids), 4), "second": round(sum(b) / len(ids), 4), **mcnemar(a, b)}
            row[metric]["p"] = round(row[metric]["p"], 4)
        out.append(row)
    return out


def run_benchmark(eval_sets: list[EvalSet], specs: list[ModelSpec], predictions_dir: Path | None,
                  plain_questions: int = 6, max_tokens: int = 96, max_answer_tokens: int = 8,
                  guided: Collection[str] = (), batch_size: int = 1,
                  latency_questions: int = LATENCY_QUESTIONS) -> dict:
    """Every model over every eval set (and the models named in `guided` guided too, beside raw); returns what
    the log, JSON and chart show. With `batch_size` > 1 the raw pass is batched, and the times are measured on
    `latency_questions` cases of each set (as many of each label), one at a time."""
    import mlx.core as mx


    sets, problems = {}, []
    for eval_set in eval_sets:
        try:
            sets[eval_set.name] = (eval_set, load_cases(eval_set.path))
        except EvalFileError as err:
            problems.append(f"eval set skipped: {err}")
            print(f"error: {err} (this eval set is skipped)", flush=True)
    if not any(cases for _, cases in sets.values()):  # before any model is loaded: that takes minutes
        empty = [f"{s.path}: no cases" for s, _ in sets.values()]
        raise NothingBenchmarked(f"no eval case to ask ({'; '.join(problems + empty)})")
    maps = {name: workspace.render_map(workspace.scan_roots(list(s.roots))) for name, (s, _) in sets.items()}
    results = {"sets": {name: {"path": str(s.path), "cases": len(cases), "roots": [str(r) for r in s.roots],
                               "workspace_map": maps[name]} for name, (s, cases) in sets.items()},
               "models": [], "results": {name: {} for name in sets}, "problems": problems, "comparisons": {},
               "guided": {name: {} for name in sets} if guided else {}, "guided_models": list(guided),
               "settings": {"max_tokens": max_tokens, "max_answer_tokens": max_answer_tokens, "decoding": "greedy",
                            "batch_size": batch_size, "latency_questions": latency_questions}}
    paired = {name: {} for name in sets}
    for spec in specs:
        info = model_info(spec)
        results["models"].append(info)
        mx.reset_peak_memory()
        try:
            started = time.perf_counter()
            model, tokenizer, info["loaded"] = load_model(spec)
            info["load_time_s"] = round(time.perf_counter() - started, 3)
        except Exception as err:  # a missing or broken model is a row of the report, not the end of the run
            info["error"] = f"{type(err).__name__}: {err}"
            print(f"{spec.name}: could not load: {info['error']}", flush=True)
            continue
        decider, vocab = None, vocabulary_trie(tokenizer) if spec.name in guided else None
        for set_name, (eval_set, cases) in sets.items():
            started = time.perf_counter()
            context = context_messages(maps[set_name] if spec.workspace_map else None)
            decider = Decider(model, tokenizer, context, max_tokens, max_answer_tokens)
            info.setdefault("prefill_s", {})[set_name] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            records, skipped = score_cases(decider, cases, eval_set.roots, f"{spec.name} / {set_name}", batch_size)
            wall = time.perf_counter() - started
            asked = {r["id"] for r in records}
            sample = latency(decider, [c for c in cases if c.id in asked], latency_questions) if batch_size > 1 else None
            if skipped:
                print(f"{spec.name} / {set_name}: {len(skipped)} cases skipped ({skipped[0]} ...)", flush=True)
            folder = None if predictions_dir is None else \
                Path(predictions_dir) / set_name if len(sets) > 1 else Path(predictions_dir)
            if folder is not None and records:
                write_jsonl(folder / f"{spec.name}.jsonl", records)
            results["results"][set_name][spec.name] = summary = summarize(records, skipped, sample)
            summary["wall_s_per_question"] = round(wall / len(records), 4) if records else None  # throughput
            paired[set_name][spec.name] = outcomes(records)
            print(f"{spec.name} / {set_name}: accuracy {summary.get('accuracy')}, success {summary.get('success')}, "
                  f"time to decision {summary.get('avg_time_to_decision_s')} s, "
                  f"raw pass {summary['wall_s_per_question']} s/question at batch size {batch_size}", flush=True)
            if vocab is not None:
                folders = folders_under(eval_set.roots)
                guard = PathGuard(tokenizer, folders, vocab)
                steered = Decider(model, tokenizer, context, max_tokens, max_answer_tokens, guard=guard)
                kept = guided_records(steered, cases, records, eval_set.roots, folders)
                if folder is not None and kept:
                    write_jsonl(folder / f"{spec.name}.guided.jsonl", kept)
                results["guided"][set_name][spec.name] = {
                    **summarize(kept, skipped), "rerun": sum(bool(r.get("guided_rerun")) for r in kept),
                    "resolved": sum("resolved_from" in r for r in kept),
                    "retried": sum(bool(r.get("retries")) for r in kept),
                    "found_by_retry": sum("first_raw" in r for r in kept),
                    "vs_raw": (paired_comparisons({"raw": outcomes(records), "guided": outcomes(kept)},
                                                 ["raw", "guided"]) or [None])[0],
                    "overhead": guided_overhead(decider, steered, cases, plain_questions or 6, folders)}
        if plain_questions and decider is not None:  # on the last set's workspace and questions
            info["plain_vs_cached"] = compare_with_plain(decider, cases, plain_questions)
        info["peak_memory_gb"] = round(mx.get_peak_memory() / 1e9, 3)
        del model, tokenizer, decider
    if not any(summary["cases"] for scores in results["results"].values() for summary in scores.values()):
        reasons = [f"{info['name']}: {info['error']}" for info in results["models"] if info.get("error")]
        if len(reasons) < len(results["models"]):
            all_skipped = "every case skipped, its repo folder is not in the workspace"
            reasons.append(f"the others: {all_skipped}" if reasons else all_skipped)
        raise NothingBenchmarked(f"no model answered a case ({'; '.join(reasons)})")
    order = [spec.name for spec in specs]
    results["comparisons"] = {name: paired_comparisons(paired[name], order) for name in sets}
    return results
