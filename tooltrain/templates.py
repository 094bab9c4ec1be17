"""Question shapes per intent. Each is a format string; its (intent, index) is its shape id.

Placeholders: {repo} folder name, {Repo} display name, {name} symbol, {owner} class of a
method, {module} dotted module, {base} base class, {exc} exception, {text} literal text,
{rel} repo-relative file path, {full} repos-root-relative file path.
"""

GREP = {
    "class_def": [
        "Where is the {name} class defined in {repo}?",
        "Find the definition of class {name} in {Repo}.",
        "Which file in {repo} defines the `{name}` class?",
        "Locate class {name} in the {Repo} codebase.",
        "I can't find where `{name}` is declared in {repo}. Can you search for it?",
        "In {Repo}, where does the class {name} live?",
    ],
    "function_def": [
        "Where is the function {name} defined in {repo}?",
        "Find where `{name}()` is implemented in {Repo}.",
        "Which module of {repo} contains the definition of {name}?",
        "Search {Repo} for the definition of the {name} function.",
        "Show me where {repo} defines `{name}`.",
    ],
    "method_def": [
        "Where is the {owner}.{name} method defined in {repo}?",
        "Find the `{name}` method of `{owner}` in {Repo}.",
        "Which file implements {owner}.{name} in {repo}?",
        "Locate the definition of the method {name} on {owner} in {Repo}.",
    ],
    "async_def": [
        "Where is the async function {name} defined in {repo}?",
        "Find the coroutine `{name}` in {Repo}.",
        "Which file in {repo} has the `async def {name}`?",
    ],
    "usage": [
        "Where is `{name}` called in {repo}?",
        "Find all usages of {name}() in {Repo}.",
        "Which places in {repo} call {name}?",
        "Show me the call sites of `{name}` across {Repo}.",
        "Who calls {name} in the {repo} code?",
    ],
    "decorator": [
        "Which functions in {repo} are decorated with @{name}?",
        "Find every use of the @{name} decorator in {Repo}.",
        "Where is `@{name}` applied in {repo}?",
        "List the places in {Repo} that use the {name} decorator.",
    ],
    "import": [
        "Which files in {repo} import {module}?",
        "Find where {Repo} imports the `{module}` module.",
        "Search {repo} for imports of {module}.",
        "What code in {Repo} depends on `{module}` (imports it)?",
    ],
    "subclass": [
        "Which classes in {repo} inherit from {base}?",
        "Find subclasses of `{base}` in {Repo}.",
        "What classes extend {base} in {repo}?",
        "Show me every class in {Repo} that derives from `{base}`.",
    ],
    "html_grep": [
        "Which HTML templates in {repo} contain {feature}?",
        "Find the templates in {Repo} that use {feature}.",
        "Search {repo}'s HTML files for {feature}.",
        "Where do the {Repo} templates have {feature}?",
    ],
    "raise": [
        "Where does {repo} raise {exc}?",
        "Find the places in {Repo} that raise `{exc}`.",
        "Which code in {repo} throws {exc}?",
        "Search {Repo} for `raise {exc}`.",
    ],
    "string": [
        "Where does the message \"{text}\" come from in {repo}?",
        "Search {Repo} for the string \"{text}\".",
        "Which file in {repo} contains the text '{text}'?",
        "I got the error \"{text}\". Where is it raised in {Repo}?",
    ],
    "constant": [
        "Where is the constant {name} defined in {repo}?",
        "Find where `{name}` is set in {Repo}.",
        "Which module of {repo} assigns {name}?",
    ],
}

READ = {
    "read_file": [
        "Show me the contents of {rel} in {repo}.",
        "Open {full}.",
        "Can you read `{full}` for me?",
        "What's in the file {rel} of the {Repo} repository?",
        "Let me see {Repo}'s {rel}.",
        "Print {full}.",
        "Read {rel} from {repo} and tell me what it contains.",
        "I need to look at {rel} in the {repo} repo.",
        "Display the source of {full}.",
        "Pull up {rel} from {Repo}.",
        "Open the {repo} file `{rel}` please.",
        "Could you show me {Repo}'s `{rel}` file?",
        "Read the file at {full}.",
        "What does {rel} in {repo} look like?",
        "cat {full}",
    ],
    "read_structure": [
        "What functions are defined in {full}?",
        "List the classes in {rel} ({repo}).",
        "Walk me through the file {full}.",
        "Give me an overview of what {full} contains.",
        "Summarise the structure of {full}.",
        "How is {full} organised?",
        "Go through {rel} in {Repo} and describe the imports at the top.",
    ],
    "html_read": [
        "Show me the template {full}.",
        "Open the HTML file {rel} in {repo}.",
        "What markup does {full} contain?",
        "Read {Repo}'s template `{rel}`.",
    ],
}

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
        "Can you explain, in plain words, what {Repo}'s {name} is?",
        "What's the point of {name} in {Repo}?",
        "Tell me what {name} means in the context of {Repo}.",
        "Quick question: what does {Repo}'s {name} represent?",
        "Describe the purpose of {name} in {Repo}.",
    ],
    "module_concept": [
        "What is the {module} module of {Repo} responsible for?",
        "In general terms, what does {Repo}'s {module} module cover?",
        "Explain what {module} is about in {Repo}.",
        "Why does {Repo} have a {module} module? What goes in it?",
        "Give me the one-paragraph summary of {Repo}'s {module} module.",
    ],
}

# How people write the projects' names in prose; the tool path is always the folder name.
DISPLAY_NAMES = {
    "fastapi": "FastAPI", "flask": "Flask", "pytest": "pytest", "typer": "Typer", "click": "Click",
    "httpx": "HTTPX", "starlette": "Starlette", "pydantic": "Pydantic", "attrs": "attrs",
    "structlog": "structlog", "svcs": "svcs", "svcs-di": "svcs-di", "tdom": "tdom",
}
