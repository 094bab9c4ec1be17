"""A ChatML chat template that renders tools and tool calls the way Qwen2.5 does.

The embedded SmolLM2 ships a template that ignores `tools` and `tool_calls`;
this one gives it a Qwen2.5-style `# Tools` section (`<tools>` one JSON
signature per line) and `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
assistant turns, so one `{"messages", "tools"}` data set serves both models.
The instruction text is shorter than Qwen's: the prefix is prefilled for
every question, and on a small CPU model each token of it costs time.

An assistant turn with tool calls renders as `<|im_start|>assistant\n<tool_call>...`,
so the prompt rendered with `add_generation_prompt` is an exact prefix of the
full row (mlx-lm's `mask_prompt` relies on that).
"""

# The system line SmolLM2's own template inserts when a chat has no system message.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

TOOLS_INSTRUCTION = (
    "To call a function, return a JSON object with its name and arguments "
    "within <tool_call></tool_call> tags:"
)

# Raw string: the `\n` escapes are Jinja's, inside Jinja string literals.
# Tool specs render as their `function` part only: the `{"type": "function"}`
# wrapper tells a model nothing and costs tokens in every prompt.
CHAT_TEMPLATE = (
    r"""{%- if messages and messages[0].role == 'system' %}
    {%- set system = messages[0].content %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = '"""
    + DEFAULT_SYSTEM
    + r"""' %}
    {%- set turns = messages %}
{%- endif %}
{{- '<|im_start|>system\n' + system }}
{%- if tools %}
    {{- '\n\n# Tools\n\nFunction signatures:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + ((tool.function if tool.function is defined else tool) | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\n"""
    + TOOLS_INSTRUCTION
    + r"""\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' }}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- for message in turns %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for call in message.tool_calls or [] %}
            {%- set fn = call.function if call.function is defined else call %}
            {{- '\n<tool_call>\n{"name": ' + (fn.name | tojson) + ', "arguments": ' }}
            {{- fn.arguments if fn.arguments is string else (fn.arguments | tojson) }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or loop.previtem.role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or loop.nextitem.role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""
)
