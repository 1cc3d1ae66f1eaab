"""The grammars llama.cpp decodes JSON under: strings without raw control characters, which json.loads refuses."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]},
    {"type": "string"},
])
def test_a_typed_answers_strings_hold_no_raw_control_characters(schema) -> None:
    """A response_format answer came back as `{ "city" : "Paris, France }\\n\\nI'm" }` (a raw newline in the
    string): the typed answer's grammar kept the converter's char rule, which allows them."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from halguru.models.llama_cpp import json_strings, value_grammar

    for gbnf in (json_strings(json_schema_to_gbnf(json.dumps(schema))), value_grammar(schema, {})):
        [char] = [line for line in gbnf.splitlines() if line.startswith("char ::=")]
        assert char.startswith('char ::= [^"\\\\\\x00-\\x1F\\x7F]'), char
