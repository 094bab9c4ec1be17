"""Ask the trained model about your own code: one decision, one tool call run inside your folders, its result.

Reads  the folders given (the workspace: the model sees their map), a model and adapter (default: the
       embedded base with the Phase 7 adapter), questions from -q or, without -q, from a prompt loop
Writes nothing; prints for each question the call as the model wrote it and the tool's result (grep hits
       as path:line: text, capped, with the total; the first lines of a read file and its size), or the
       direct answer in full; with --json one JSON record per question (decision, call, result, timings)

It does one routing decision and one tool call; it does not read the result and answer from it.

Run from the project root (after make phase7):
    python -m scripts.ask path/to/code -q "where is the retry logic?"
    python -m scripts.ask path/to/code other/folder --guided # interactive; Ctrl-D leaves
    make ask REPO=path/to/code Q="where is the retry logic?" [ADAPTER=adapters_phase6] [MODEL=...] [GUIDED=1]
"""

import argparse
import json
import sys
from pathlib import Path

from tooltrain import paths
from tooltrain.blas import reexec_with_optimized_blas
from tooltrain.eval.ask import AskError, Assistant, Workspace
from tooltrain.eval.benchmark import ModelSpec, load_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="REPO", help="the folder(s) to ask about")
    parser.add_argument("-q", "--question", help="one question (default: ask in a loop, reading stdin)")
    parser.add_argument("--model", default=str(paths.DEFAULT_MODEL_DIR), help="base model (default the embedded one)")
    parser.add_argument("--adapter", default=str(paths.PROJECT_ROOT / "adapters_phase7"),
                        help="LoRA adapter folder (default adapters_phase7); 'none' for the model alone")
    parser.add_argument("--json", action="store_true", help="one JSON record per question")
    parser.add_argument("--guided", action="store_true",
                        help="guided decoding: a call's path can only be a real path of the folders")
    parser.add_argument("--max-tokens", type=int, default=256, help="generation budget per question")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ws = Workspace(args.folders)  # before anything slow: a bad folder fails at once
    except AskError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    reexec_with_optimized_blas()
    adapter = None if args.adapter == "none" else args.adapter
    try:
        model, tokenizer, loaded = load_model(ModelSpec("ask", args.model, adapter))
    except Exception as err:  # a missing or broken model or adapter: one line, not a traceback
        print(f"error: could not load the model: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    assistant = Assistant(model, tokenizer, ws, args.max_tokens, args.guided)
    if not args.json:
        print(f"model: {loaded}\n{ws.map_text()}", file=sys.stderr)
    if args.question is not None:
        return 0 if answer(assistant, args.question, args.json) else 1
    return loop(assistant, args.json)


def answer(assistant: Assistant, question: str, as_json: bool) -> bool:
    try:
        reply = assistant.ask(question)
    except AskError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    print(json.dumps(reply.record(), ensure_ascii=False) if as_json else reply.text(), flush=True)
    return True


def loop(assistant: Assistant, as_json: bool) -> int:
    """Questions from stdin, one per line, until end of input; a bad one is reported and the loop goes on."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    prompt = "" if as_json or not sys.stdin.isatty() else "ask> "
    sys.stdin.reconfigure(errors="surrogateescape")  # bytes that are not UTF-8 reach check_question, not a crash
    while True:
        try:
            question = input(prompt)
        except EOFError:
            return 0
        if question.strip():
            answer(assistant, question, as_json)


if __name__ == "__main__":
    sys.exit(main())
