"""The Makefile's stage prerequisites: derived from each script's imports, so they cannot drift."""

import re

from tooltrain.deps import ROOT, code_files


def test_a_stage_depends_on_every_module_its_script_runs_lazy_imports_and_resources_included():
    assert {"tooltrain/train/prefix_loss.py", "tooltrain/io.py", "tooltrain/paths.py", "tooltrain/model_folders.py",
            "tooltrain/eval/benchmark.py", "tooltrain/train/__init__.py"} <= set(code_files("scripts/train_adapter.py"))
    assert {"tooltrain/eval/decoding.py", "tooltrain/model_folders.py", "tooltrain/io.py", "tooltrain/blas.py",
            "tooltrain/eval/guided.py"} <= set(code_files("benchmark_phase5_vs_base.py"))  # blas lazily
    assert {"tooltrain/model_folders.py", "tooltrain/train/record.py"} <= set(code_files("scripts/fuse_phase5.py"))
    html = code_files("scripts/generate_html_examples.py")
    assert "tooltrain/resources/html_qa.jsonl" in html and "tooltrain/resources/library_qa.jsonl" in html
    assert "tooltrain/resources/html_qa.jsonl" not in code_files("scripts/generate_repo_examples.py")
    assert "tooltrain/eval/ask.py" not in code_files("benchmark_phase5_vs_base.py")  # not everything, either
    assert not any(f.startswith("tooltrain/train/") for f in code_files("scripts/generate_repo_examples.py"))


def test_every_script_a_file_target_runs_is_an_entry_make_derives_code_for():
    makefile = (ROOT / "Makefile").read_text()
    entries = re.search(r"^CODE_ENTRIES := (.*?[^\\])$", makefile, re.M | re.S).group(1).replace("\\\n", " ").split()
    modules = re.findall(r"\$\(TIMED\)[^\n]*?\$\(PY\) -m (scripts\.\w+)", makefile)
    files = re.findall(r"\$\(TIMED\)[^\n]*?\$\(PY\) (\w+\.py)", makefile)
    scripts = {m.replace(".", "/") + ".py" for m in modules} | set(files)
    assert scripts and scripts <= set(entries), scripts - set(entries)
    assert all((ROOT / e).is_file() for e in entries)
