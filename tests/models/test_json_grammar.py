"""The grammars llama.cpp decodes JSON under: strings without raw control characters, which json.loads refuses."""

from __future__ import annotations

import json
import re

import pytest


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]},
    {"type": "string"},
])
def test_a_typed_answers_strings_hold_no_raw_control_characters(schema) -> None:
    """A response_format answer came back as `{ "city" : "Paris, France }\\n\\nI'm" }` (a raw newline in the
    string): the typed answer's grammar kept the converter's char rule, which allows them."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from halguru.models.llama_grammar import json_strings, value_grammar

    for gbnf in (json_strings(json_schema_to_gbnf(json.dumps(schema))), value_grammar(schema, {})):
        [char] = [line for line in gbnf.splitlines() if line.startswith("char ::=")]
        assert char.startswith('char ::= [^"\\\\\\x00-\\x1F\\x7F]'), char


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^c{1,20000}$"},  # 215 bytes of request: llama.cpp's parser segfaulted
    {"type": "string", "maxLength": 5000},
    {"type": "array", "maxItems": 5000, "items": {"type": "integer"}},
    {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": "^(a|b)*c{1,999}$"} for i in range(300)}},
])
def test_a_schema_whose_grammar_llama_cpp_cannot_take_safely_is_refused(schema) -> None:
    """A repetition becomes groups nested as deep; 20,000 deep crashed the server (a stack overflow in
    llama_sampler_init_grammar), and thousands of properties with one made a grammar of megabytes that took
    seconds and hundreds of MB per request. Refused with the reason, before llama.cpp sees it."""
    from halguru.models.llama_grammar import schema_grammar, value_grammar

    for make in (lambda: schema_grammar(schema), lambda: value_grammar(schema, {})):
        with pytest.raises(ValueError, match="its grammar would"):
            make()


def test_sizes_llama_cpp_takes_still_pass() -> None:
    from halguru.models.llama_grammar import schema_grammar

    for schema in ({"type": "string", "maxLength": 1000}, {"type": "string", "pattern": '^[(]{3}"\\($'},
                   {"type": "array", "minItems": 20000, "maxItems": 20000, "items": {"type": "string"}},
                   {"type": "object", "required": [f"p{i}" for i in range(3000)],  # 0.7 MB of grammar
                    "properties": {f"p{i}": {"type": "string", "pattern": "^[a-z0-9.+-]+@[a-z0-9.-]+\\.[a-z]{2,10}$"}
                                   for i in range(3000)}}):
        assert "root ::=" in schema_grammar(schema)


@pytest.mark.parametrize("pattern", ["^(a|b)*c{1,999}$", "^c{1,100}$"])
def test_a_schema_too_wide_is_refused_before_its_grammar_is_built(pattern: str, monkeypatch) -> None:
    """3,000 properties with a pattern (208 KB of request) made a 21 MB grammar, ~0.9 s of CPU each, only to
    refuse it: now the schema's size is weighed first and the converter never runs."""
    import llama_cpp.llama_grammar as converter

    from halguru.models.llama_grammar import schema_grammar, value_grammar

    def never(*args, **kwargs):
        raise AssertionError("the grammar was built")

    monkeypatch.setattr(converter, "json_schema_to_gbnf", never)
    monkeypatch.setattr(converter, "SchemaConverter", never)
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": pattern} for i in range(3000)}}
    for make in (lambda: schema_grammar(schema), lambda: value_grammar(schema, {})):
        with pytest.raises(ValueError, match="its grammar would be about"):
            make()


def _optional(count: int) -> dict:
    return {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(count)}}


@pytest.mark.parametrize(("schema", "said"), [
    (_optional(101), "an object of it has 101 optional properties (at most 100 in one object)"),
    ({**_optional(150), "required": [f"p{i}" for i in range(40)], "additionalProperties": True},
     "an object of it has 111 optional properties"),  # additionalProperties is one more
    ({"type": "object", "allOf": [{"anyOf": [{"$ref": "#/$defs/a"}] * 9}], "$defs": {"a": _optional(30)}},
     "an object of it has 270 optional properties"),  # an allOf's anyOf members are merged, each use again
    ({"type": "array", "items": [_optional(100)] * 21}, "it has 2,100 optional properties (at most 2,000 in all)"),
    ({**_optional(100), "additionalProperties": 1}, "an object of it has 101 optional properties"),  # 1 == True
])
def test_a_schema_of_too_many_optional_properties_is_refused_before_its_grammar_is_built(schema, said: str,
                                                                                         monkeypatch) -> None:
    """The converter writes every suffix of an object's optional properties: 900 took ~0.9 s of CPU per request."""
    import llama_cpp.llama_grammar as converter

    from halguru.models.llama_grammar import schema_grammar, value_grammar

    def never(*args, **kwargs):
        raise AssertionError("the grammar was built")

    monkeypatch.setattr(converter, "json_schema_to_gbnf", never)
    monkeypatch.setattr(converter, "SchemaConverter", never)
    for make in (lambda: schema_grammar(schema), lambda: value_grammar(schema, {})):
        with pytest.raises(ValueError, match=re.escape(said)):
            make()


def test_optional_properties_up_to_the_limits_still_pass() -> None:
    from halguru.models.llama_grammar import schema_grammar

    at_limits = {"type": "object", "required": [f"o{j}" for j in range(20)],
                 "properties": {f"o{j}": _optional(100) for j in range(20)}}
    required = {**_optional(1000), "required": [f"p{i}" for i in range(1000)]}  # required ones cost nothing
    for schema in (at_limits, required, {"type": "object", "allOf": [{"anyOf": [_optional(50), _optional(50)]}]}):
        assert "root ::=" in schema_grammar(schema)


@pytest.mark.parametrize("schema", [
    {**_optional(150), "anyOf": [{"type": "string"}, {"type": "integer"}]},
    {**_optional(150), "enum": [{"p1": 1}, {"p2": 2}]},
    {**_optional(150), "type": ["string", "integer"]},
    {**_optional(150), "type": "string"},
])
def test_properties_the_converter_never_reads_are_not_counted(schema) -> None:
    """A schema whose properties stand beside what the converter builds instead (a union, an enum, another
    type) was refused for optional properties that cost nothing: they are never turned into a grammar."""
    from halguru.models.llama_grammar import schema_grammar

    assert "root ::=" in schema_grammar(schema)


def test_a_tools_refs_resolve_for_every_argument_and_every_call() -> None:
    """A tool whose arguments name a model (``$defs`` and ``$ref``, as pydantic and the openai SDK's
    ``pydantic_function_tool`` write them): the first argument's grammar rewrote the tool's own schema
    ("#/$defs/Where" became "tool#/$defs/Where"), so the next argument, and every later call of the tool, failed
    the run with "Unsupported ref tool#/$defs/Where"."""
    from halguru.models.llama_grammar import value_grammar

    parameters = {"$defs": {"Where": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}},
                  "type": "object", "properties": {"where": {"$ref": "#/$defs/Where"}, "days": {"type": "integer"}}}
    before = json.dumps(parameters)
    for _ in range(2):
        for schema in parameters["properties"].values():
            assert "root ::=" in value_grammar(schema, parameters)
    assert json.dumps(parameters) == before
