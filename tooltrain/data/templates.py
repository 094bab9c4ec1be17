"""Question shapes per intent. Each is a format string; its (intent, list, index) is its shape id.

Placeholders: {Repo} a spelling of the repository's name as people write it (never the
workspace folder: the map tells that), {name} an identifier, {words} the same identifier
in plain words (CamelCase and snake_case split), {owner} a method's class, {module}
a dotted module, {base} a base class, {exc} an exception, {text} literal message text,
{names} several identifiers, {rel} a repo-relative path, {path} a file as the user gives
it (full, repo-relative, without `src/`, or its bare name), {full} a repos-root-relative
path, {top} a top-level file in words ("the README"), {feature} an HTML feature.

GREP_WORDS shapes describe the target in words instead of giving the identifier: the
model has to rebuild `CaseInsensitiveDict` from "case insensitive dict".
"""

GREP = {
    "class_def": [
        "Where is the {name} class defined in {Repo}?",
        "Find the definition of class {name} in {Repo}.",
        "Which file in {Repo} defines the `{name}` class?",
        "where does {Repo} declare {name}",
        "{Repo}: where is {name} defined?",
        "I can't find where `{name}` is declared in {Repo}. Can you search for it?",
        "Track down the {name} implementation in {Repo}.",
        "Where's {Repo}'s {name} class?",
        "In {Repo}, where does {name} live?",
        "find class {name} in {Repo}",
        "Where does {name} get declared? (it's in {Repo})",
        "Which module of {Repo} has `class {name}`?",
    ],
    "function_def": [
        "Where is the function {name} defined in {Repo}?",
        "Find where `{name}()` is implemented in {Repo}.",
        "Which module of {Repo} contains the definition of {name}?",
        "{Repo}: where is {name} defined?",
        "Show me where {Repo} defines `{name}`.",
        "where's {name} implemented in {Repo}",
        "Locate {Repo}'s {name} function.",
        "I need the definition of {name} in {Repo}.",
        "Where does {name} come from in {Repo}? I want its def.",
        "find def {name} in {Repo}",
    ],
    "method_def": [
        "Where is the {owner}.{name} method defined in {Repo}?",
        "Find the `{name}` method of `{owner}` in {Repo}.",
        "Which file implements {owner}.{name} in {Repo}?",
        "{Repo}: where is {owner}.{name} implemented?",
        "where's the {name} method on {Repo}'s {owner}",
        "Locate the definition of {owner}.{name}() in {Repo}.",
        "In {Repo}, where does {owner} define {name}?",
        "Where does {Repo} implement {owner}.{name}?",
        "find {name} on {Repo}'s {owner}",
        "{owner}.{name} in {Repo}: where is it implemented?",
    ],
    "async_def": [
        "Where is the async function {name} defined in {Repo}?",
        "Find the coroutine `{name}` in {Repo}.",
        "Which file in {Repo} has the `async def {name}`?",
        "{Repo}: where's the async {name} defined?",
        "where is the coroutine {name} in {Repo}",
    ],
    "usage": [
        "Where is `{name}` called in {Repo}?",
        "Find all usages of {name}() in {Repo}.",
        "Which places in {Repo} call {name}?",
        "Show me the call sites of `{name}` across {Repo}.",
        "Who calls {name} in the {Repo} code?",
        "{Repo}: where is {name}() used?",
        "where does {Repo} use {name}",
        "What code in {Repo} invokes `{name}(...)`?",
        "Which parts of {Repo} make use of {name}?",
        "In {Repo}, who calls {name}?",
        "{name}: who uses it in {Repo}?",
        "Where does {Repo} invoke {name}, i.e. the {name}() calls?",
    ],
    "decorator": [
        "Which functions in {Repo} are decorated with @{name}?",
        "Find every use of the @{name} decorator in {Repo}.",
        "Where is `@{name}` applied in {Repo}?",
        "List the places in {Repo} that use the {name} decorator.",
        "{Repo}: what gets decorated with @{name}?",
        "where is @{name} used in {Repo}",
        "Show me the functions {Repo} wraps with `@{name}`.",
        "Which functions in {Repo} are wrapped with @{name}?",
        "what does {Repo} decorate with @{name}",
    ],
    "decorator_def": [
        "Where is the @{name} decorator defined in {Repo}?",
        "Find the definition of the `{name}` decorator in {Repo}.",
        "{Repo}: where is the decorator {name} implemented?",
        "Which file of {Repo} defines the @{name} decorator itself?",
        "where's the code of the @{name} decorator in {Repo}",
        "I want to see how `@{name}` is implemented in {Repo}. Where is it defined?",
    ],
    "import": [
        "Which files in {Repo} import {module}?",
        "Find where {Repo} imports the `{module}` module.",
        "Search {Repo} for imports of {module}.",
        "What code in {Repo} depends on `{module}` (imports it)?",
        "{Repo}: which modules import {module}?",
        "where does {Repo} import {module}",
    ],
    "relative_import": [
        "Which modules in {Repo} import from `{module}`?",
        "Find the relative imports of {module} in {Repo}.",
        "{Repo}: where is `from {module} import` used?",
        "Where does {Repo} do `from {module} import ...`?",
        "which files in {Repo} import something from {module}",
    ],
    "import_name": [
        "Which files in {Repo} import {name}?",
        "Where is {name} imported in {Repo}?",
        "Find the modules of {Repo} that import `{name}` from {module}.",
        "{Repo}: who imports {name}?",
        "where does {Repo} import {name} from {module}",
        "Which {Repo} modules pull in `{name}`?",
    ],
    "subclass": [
        "Which classes in {Repo} inherit from {base}?",
        "Find subclasses of `{base}` in {Repo}.",
        "What classes extend {base} in {Repo}?",
        "Show me every class in {Repo} that derives from `{base}`.",
        "{Repo}: what subclasses {base}?",
        "which {Repo} classes are based on {base}",
        "What inherits from {base} in {Repo}?",
        "In {Repo}, which classes are built on the `{base}` base class?",
    ],
    "raise": [
        "Where does {Repo} raise {exc}?",
        "Find the places in {Repo} that raise `{exc}`.",
        "Which code in {Repo} throws {exc}?",
        "Search {Repo} for `raise {exc}`.",
        "{Repo}: where is {exc} raised?",
        "where can {Repo} throw a {exc}",
        "What in {Repo} raises {exc}?",
        "Where is {exc} thrown in {Repo}?",
        "In {Repo}, which code throws {exc}?",
        "{Repo} throws {exc} somewhere: where?",
        "Find the places where {Repo} can throw `{exc}`.",
    ],
    "string": [
        "Where does the message \"{text}\" come from in {Repo}?",
        "Search {Repo} for the string \"{text}\".",
        "Which file in {Repo} contains the text '{text}'?",
        "I got the error \"{text}\". Where is it raised in {Repo}?",
        "{Repo} printed \"{text}\" - where is that in the code?",
        "find \"{text}\" in {Repo}",
    ],
    "constant": [
        "Where is the constant {name} defined in {Repo}?",
        "Find where `{name}` is set in {Repo}.",
        "Which module of {Repo} assigns {name}?",
        "{Repo}: where does {name} get its value?",
        "where is {name} declared in {Repo}",
        "What's the value of {Repo}'s {name}, and where is it set?",
    ],
    "constants_multi": [
        "Where are the constants {names} defined in {Repo}?",
        "Find where {Repo} sets {names}.",
        "{Repo}: which module defines {names}?",
        "where are {names} declared in {Repo}",
    ],
    "classes_multi": [
        "Where are the {names} classes defined in {Repo}?",
        "Find the definitions of {names} in {Repo}.",
        "{Repo}: which file declares {names}?",
        "where do {names} live in {Repo}",
    ],
    "html_grep": [
        "Which HTML templates in {Repo} contain {feature}?",
        "Find the templates in {Repo} that use {feature}.",
        "Search {Repo}'s HTML files for {feature}.",
        "Where do the {Repo} templates have {feature}?",
        "{Repo}: which templates have {feature}?",
    ],
}

GREP_WORDS = {
    "class_def": [
        "Where is the class for the {words} defined in {Repo}?",
        "Which file in {Repo} has the {words} class?",
        "{Repo}: where's the {words} class?",
        "find the {words} class in {Repo}",
        "Track down {Repo}'s {words} class for me.",
    ],
    "function_def": [
        "Where is the {words} function defined in {Repo}?",
        "Which module of {Repo} implements the {words} function?",
        "{Repo}: where's the function that does {words}?",
        "find the {words} function in {Repo}",
    ],
    "method_def": [
        "Where is the {words} method of {owner} defined in {Repo}?",
        "{Repo}: where does {owner} implement its {words} method?",
    ],
    "constant": [
        "Where is the {words} constant set in {Repo}?",
        "{Repo}: where's the {words} setting defined?",
        "find the {words} constant in {Repo}",
    ],
}

READ = {
    # Shapes for a full path (it names the repository itself).
    "full": [
        "Show me the contents of {path}.",
        "Open {path}.",
        "Can you read `{path}` for me?",
        "What's in {path}?",
        "Print {path}.",
        "cat {path}",
        "Display the source of {path}.",
        "Read the file at {path}.",
        "open {path} please",
        "I need to look at {path}.",
    ],
    # Shapes for a path the user gives inside a named repository (repo-relative, without src/, a bare name).
    "in_repo": [
        "Show me {path} in {Repo}.",
        "Open {Repo}'s {path}.",
        "What's in the file {path} of {Repo}?",
        "Let me see {path} from {Repo}.",
        "{Repo}: open {path}",
        "Read {path} from {Repo} and tell me what it contains.",
        "I need to look at {path} in the {Repo} repo.",
        "Pull up {path} from {Repo}.",
        "Could you show me {Repo}'s `{path}` file?",
        "cat {path} in {Repo}",
        "what does {path} in {Repo} look like",
    ],
    "module": [
        "Show me the {module} module.",
        "Open the source of {module}.",
        "Read the module {module} for me.",
        "What's in {module}? Show me the file.",
        "Open {Repo}'s {module} module.",
        "{Repo}: show me the {module} module",
        "I'd like to read the code of `{module}`.",
    ],
    "structure": [
        "What functions are defined in {path}?",
        "List the classes in {path}.",
        "Walk me through the file {path}.",
        "Give me an overview of what {path} contains.",
        "Summarise the structure of {path}.",
        "How is {path} organised?",
        "What does {path} import at the top?",
    ],
    "structure_in_repo": [
        "What functions are defined in {path} ({Repo})?",
        "List the classes in {Repo}'s {path}.",
        "{Repo}: walk me through {path}",
        "Give me an overview of {path} in {Repo}.",
        "Summarise the structure of the {module} module.",
        "What classes does {module} define? Show me the file.",
    ],
    "top": [
        "Show me {Repo}'s {top}.",
        "Open the {top} of {Repo}.",
        "What's in {Repo}'s {top}?",
        "{Repo}: read the {top}",
        "Can you pull up the {top} for {Repo}?",
        "read {Repo}'s {top} and tell me what it says",
    ],
    "html": [
        "Show me the template {path}.",
        "Open the HTML file {path}.",
        "What markup does {path} contain?",
        "Read the template `{path}`.",
        "Open {Repo}'s template {path}.",
    ],
}

# How a top-level file is named in a question.
TOP_WORDS = {"README": ["README", "readme"], "pyproject.toml": ["pyproject.toml", "pyproject file"],
             "setup.cfg": ["setup.cfg"], "setup.py": ["setup.py"],
             "CHANGELOG": ["changelog", "CHANGELOG", "release notes"], "CHANGES": ["changelog", "CHANGES file"],
             "HISTORY": ["changelog", "HISTORY file"], "NEWS": ["changelog", "NEWS file"]}

DIRECT = {
    "symbol_concept": [
        "In {Repo}, what is {name} used for?",
        "Explain the idea behind {Repo}'s {name}.",
        "Conceptually, what does {name} do in {Repo}?",
        "What problem does {name} solve in {Repo}?",
        "Give me a short explanation of {name} in {Repo}.",
        "Briefly, what is {name} in {Repo}?",
        "How would you describe {Repo}'s {name} to a newcomer?",
        "What is the role of {name} in {Repo}, in a sentence or two?",
        "Without looking at the code, what is {Repo}'s {name} for?",
        "I keep seeing {name} in {Repo} code. What is it?",
        "what's the point of {name} in {Repo}",
        "Tell me what {name} means in the context of {Repo}.",
        "{Repo}: what does {name} represent?",
        "Describe the purpose of `{name}` in {Repo}.",
        "When would I use {Repo}'s {name}?",
    ],
    "module_concept": [
        "What is the {module} module of {Repo} responsible for?",
        "In general terms, what does {Repo}'s {module} module cover?",
        "Explain what {module} is about.",
        "Why does {Repo} have a {module} module? What goes in it?",
        "what is {module} for",
    ],
}

# How people write the projects' names in prose (the first is the usual one).
SPELLINGS = {
    "fastapi": ["FastAPI", "fastapi", "FastApi"], "flask": ["Flask", "flask"], "pytest": ["pytest", "Pytest"],
    "typer": ["Typer", "typer"], "click": ["Click", "click"], "httpx": ["HTTPX", "httpx"],
    "starlette": ["Starlette", "starlette"], "pydantic": ["Pydantic", "pydantic"], "attrs": ["attrs", "attr"],
    "structlog": ["structlog", "Structlog"], "svcs": ["svcs", "SVCS"], "svcs-di": ["svcs-di", "svcs_di", "svcs DI"],
    "tdom": ["tdom", "TDOM"],
}


def spellings(repo: str) -> list[str]:
    """How a repository's name is written in questions; an unknown one as its folder and capitalised."""
    return SPELLINGS.get(repo, [repo, repo.capitalize()])
