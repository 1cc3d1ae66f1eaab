"""Grammars that constrain llama.cpp's sampling to JSON (a typed answer, a tool's argument values), and the
limits that keep them safe: llama-cpp-python's converter and llama.cpp's parser are fed only schemas and grammars
whose size, nesting and optional properties they take in bounded time and stack."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

# The rest of a JSON string whose opening quote is already in the prompt.
STRING_REST_GRAMMAR = r"""
char ::= [^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])
root ::= char+ "\"" end
end ::= [,}]
"""


def is_plain_string(schema: dict[str, Any]) -> bool:
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
_OTHER_BRANCH = {"$ref", "oneOf", "anyOf", "const", "enum"}  # what the converter turns into a rule before an object
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
    """The optional properties of the object the converter builds of ``node``, where it builds one (not for a
    ``$ref``, a union, a ``const`` or ``enum`` or another type, whose properties it never reads): its properties
    not ``required``, and an allowed ``additionalProperties`` is one more (measured: it costs what one more
    optional property does, and its value's rules once); or an ``allOf``'s: the properties of its ``anyOf``
    members (through a $ref too, each use counting again, as the converter copies them)."""
    if _OTHER_BRANCH & node.keys() or node.get("type") not in (None, "object"):
        return 0
    more = node.get("additionalProperties")
    if "properties" in node or ("additionalProperties" in node and more is not True):
        properties = node.get("properties")
        required = node.get("required")
        needed = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        optional = sum(name not in needed for name in properties) if isinstance(properties, dict) else 0
        # the converter's test is ``== True``: 1 allows them too
        return optional + int(isinstance(more, dict) or (type(more) in (bool, int, float) and more == 1))
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


def or_opening(gbnf: str, opening: str) -> str:
    """``gbnf`` (a schema's answer) that may instead be ``opening`` alone (a tool call's start, after which the
    call is written under its own grammar): an agent with tools answers in the schema, or calls a tool."""
    renamed = re.sub(r"^root ::=", "schema-answer-root ::=", gbnf, count=1, flags=re.MULTILINE)
    return f"{renamed}\nroot ::= schema-answer-root | [ \\t\\n]* {json.dumps(opening)}\n"


def value_grammar(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """GBNF for one JSON value matching ``schema`` (``definitions`` resolves its $refs)."""
    from llama_cpp.llama_grammar import SchemaConverter

    small_enough(schema)
    small_enough(definitions)
    # The converter rewrites each $ref it resolves in place ("#/$defs/X" -> "tool#/$defs/X"), which it then
    # refuses: a copy (``schema`` inside it when it is one of ``definitions``' own), so the tool's stays as it was
    definitions, schema = copy.deepcopy((definitions, schema))
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.resolve_refs(definitions, "tool")
    rule = converter.visit(schema, "value")
    return bounded(json_strings(converter.format_grammar())) + (
        # The prompt ends at ':' so the model can pick its natural ' "' token (no token-healing issue),
        # and the value must be followed by ',' or '}' (dropped afterwards): without a natural way to
        # end, the model keeps appending digits or characters to the value.
        f'\nroot ::= " "? {rule} end\nend ::= [,}}]\n')
