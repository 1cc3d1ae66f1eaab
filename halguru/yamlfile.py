"""Reading YAML files that pydantic validates, with errors that name the file, the line and the field."""

from __future__ import annotations

import re
import stat
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from halguru.errors import HalguruError, did_you_mean

# PyYAML parses ~2 MB a second, and each problem said composes the text again: a 50 MB agent.yaml took minutes
MAX_YAML_BYTES = 2 * 1024 * 1024


def not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """``PATH: not UTF-8 text (byte 0xe9 at line 3)``: a file saved in another encoding, or not text at all."""
    line = exc.object[:exc.start].count(b"\n") + 1
    return f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at line {line}); save it as UTF-8"


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def yaml_line_for(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the value at ``loc`` (a pydantic error location) in a YAML text."""
    try:
        return _node_line(yaml.compose(text), loc)
    except (yaml.YAMLError, RecursionError):
        return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load's loader, refusing a key given twice in one mapping (``name: x`` then ``name: y``: PyYAML
    keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # << merges are their own thing
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # an unhashable key: PyYAML's own error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in this mapping (the first would be ignored)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: Path, error: type[HalguruError]) -> Any:
    """The YAML document in ``text``; a syntax error is one ``error`` line, ``path:line:column: problem``
    (PyYAML's own message spans several lines and names "<unicode string>", not the file)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark, start = _at(getattr(exc, "problem_mark", None)), _at(getattr(exc, "context_mark", None))
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        if problem == "could not find expected ':'" and start:  # `model smollm2`: the key's line, not the next
            mark, context = start, None
        hint = _hint(problem, text, mark)
        if context:  # "while parsing a flow sequence": where it began
            problem += f" ({context}{f' at line {start[0]}, column {start[1]}' if start and start != mark else ''})"
        where = f":{mark[0]}:{mark[1]}" if mark else ""
        raise error(f"{path}{where}: invalid YAML: {problem}{f'; {hint}' if hint else ''}") from None
    except RecursionError:  # PyYAML's parser recurses once per level: [[[[... thousands deep
        raise error(f"{path}: invalid YAML: nested too deeply (lists or mappings thousands of levels deep)") from None


def _hint(problem: str, text: str, mark: tuple[int, int] | None) -> str:
    """What to do about PyYAML's most common complaints, which name its grammar, not the mistake: a key without
    its ':', a line indented unlike its neighbours, a tab, a value holding ': ' unquoted."""
    if problem == "could not find expected ':'":
        return "write this line's key as `key: value`, with ': ' after the key"
    if problem.startswith("found character '\\t'"):
        return "indent with spaces, not tabs"
    if problem.startswith("expected <block end>"):
        return ("indent this line as the keys (or '- ' items) beside it, with spaces, and check that a quote "
                "opened above is closed")
    if problem == "mapping values are not allowed here" and mark:
        line = text.splitlines()[mark[0] - 1] if mark[0] <= len(text.splitlines()) else ""
        if re.match(r"\s*(?:- +)?[^\s#'\"][^:#]*:\s", line[:mark[1] - 1]):  # `description: Note: this`
            return "quote a value that holds ': ' (description: \"Note: this\")"
        return ("YAML reads this line as the rest of the value above it: indent it as the keys beside it, and check "
                "that the keys above have ': ' after them")
    if problem.startswith(("expected ',' or ']'", "expected ',' or '}'")):
        closer = problem[len("expected ',' or '")]
        return f"separate the items with ', ' and close the {'list' if closer == ']' else 'mapping'} with '{closer}'"
    return ""


def _at(mark: yaml.Mark | None) -> tuple[int, int] | None:
    """A PyYAML mark as a 1-based (line, column)."""
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def read_mapping(path: Path, error: type[HalguruError], missing: str, shape: str) -> tuple[str, dict[str, Any]]:
    """The file's text and its YAML mapping; any problem is one ``error`` naming the file (and line)."""
    try:
        text = _small_text(path, error)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise error(not_utf8(path, exc)) from None
    data = parse_yaml(text, path, error)
    if not isinstance(data, dict):
        raise error(f"{path}:1: must be a YAML mapping ({shape})")
    return text, data


def _small_text(path: Path, error: type[HalguruError]) -> str:
    """The file's text; a pipe or a device (a read would wait forever, or never end) or a file over MAX_YAML_BYTES
    is refused before it is read."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):  # a folder: read_text says so
        raise error(f"{path}: not a regular file (a pipe, socket or device); give a YAML file")
    if info.st_size > MAX_YAML_BYTES:
        raise error(f"{path}: {info.st_size / 2**20:.0f} MB, over the {MAX_YAML_BYTES // 2**20} MB a YAML file "
                    "here may be; split it, or keep long texts in files of their own")
    return path.read_text(encoding="utf-8")


def first_problem(text: str, exc: ValidationError, unknown: str = "unknown field",
                  model: type[BaseModel] | None = None) -> tuple[tuple[Any, ...], int, str]:
    """The first validation error as (location, line, "field: message"); an unknown field comes before the rest,
    as it is most often a misspelt one whose "required field is missing" is also among them (``modle:``), and
    with the ``model`` validated it names the field meant (``unknown field (did you mean 'model'?)``)."""
    errors = sorted(_kept(exc, model), key=lambda e: (e["type"] != "extra_forbidden",  # then the file's order
                                               yaml_line_for(text, tuple(e["loc"])) or 1))
    loc, line, problem = _problem(text, errors[0], unknown, model)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return loc, line, f"{problem}{more}"


def every_problem(text: str, exc: ValidationError, unknown: str = "unknown field",
                  model: type[BaseModel] | None = None) -> list[tuple[tuple[Any, ...], int, str]]:
    """Each validation error as (location, line, "field: message"), in the file's order: `halguru validate` and
    `halguru test` list them all instead of one a round."""
    return sorted(dict.fromkeys(_problem(text, e, unknown, model) for e in _kept(exc, model)),
                  key=lambda p: (p[1], p[2]))


def _kept(exc: ValidationError, model: type[BaseModel] | None = None) -> list[Any]:
    """The errors worth saying: a field missing beside an unknown one is most often that one misspelt
    (``modle:``), said once, as unknown; of a field taking several shapes, only the shape the value has."""
    errors = _one_shape(list(exc.errors()), model) if model is not None else list(exc.errors())
    misspelt = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    return [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in misspelt)]


def _one_shape(errors: list[Any], model: type[BaseModel]) -> list[Any]:
    """A value of a field typed ``str | ToolExpectation | list[...]`` failed each shape, and pydantic says each
    (``tool_called.str: Input should be a valid string``, ``tool_called.list[...]: ...``): keep the shape that got
    furthest into the value (a mapping's misspelt key), the first one when none got in (``tool_called: 5``: a
    text), and drop the shapes' tags from the locations, so they read as the file is written."""
    tagged = [(e, _union_tags(model, tuple(e["loc"]))) for e in errors]
    decided: set[tuple[Any, ...]] = set()
    while True:
        sites: dict[tuple[Any, ...], dict[Any, list[int]]] = {}  # where a union is -> its shape -> errors
        for n, (e, tags) in enumerate(tagged):
            for at in tags:
                sites.setdefault(tuple(e["loc"][:at]), {}).setdefault(e["loc"][at], []).append(n)
        site = min((s for s, shapes in sites.items() if len(shapes) > 1 and s not in decided), key=len, default=None)
        if site is None:
            break
        decided.add(site)  # outer unions first: an inner one is decided among the errors of the shape kept
        shapes = sites[site]
        # then the shape whose keys fit: `{reject: 5}` is a Reject with a wrong reason, not an unknown key
        rank = {shape: (max(len(tagged[n][0]["loc"]) - len(site) for n in ns),
                        -sum(tagged[n][0]["type"] in ("extra_forbidden", "missing") for n in ns))
                for shape, ns in shapes.items()}
        best = max(rank.values())
        kept = [shape for shape in shapes if rank[shape] == best][:None if best[0] > 1 else 1]
        dropped = {n for shape, ns in shapes.items() if shape not in kept for n in ns}
        tagged = [pair for n, pair in enumerate(tagged) if n not in dropped]
    return [{**e, "loc": tuple(p for i, p in enumerate(e["loc"]) if i not in tags)} for e, tags in tagged]


def _union_tags(model: type[BaseModel], loc: tuple[Any, ...]) -> list[int]:
    """The positions in a pydantic error location that name a shape of a union (``ToolExpectation``, ``str``,
    ``list[str]``), found by walking ``model``'s annotations along it."""
    annotation: Any = model
    tags: list[int] = []
    for i, part in enumerate(loc):
        if get_origin(annotation) in (Union, types.UnionType):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) > 1:  # pydantic tags each member's errors with its shape
                tags.append(i)
                annotation = next((m for m in members if _shape_name(m, part)), None)
                continue
            annotation = members[0]
        if isinstance(part, int) and get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif isinstance(part, str) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        elif isinstance(part, str) and get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            break
    return tags


def _shape_name(member: Any, tag: Any) -> bool:
    """Whether pydantic's tag ``tag`` names the union member ``member``."""
    if not isinstance(tag, str):
        return False
    if isinstance(member, type):
        return tag == member.__name__
    origin = get_origin(member)
    return (origin is list and tag.startswith("list[")) or (origin is dict and tag.startswith("dict[")) or (
        origin is Literal and tag.startswith("literal["))


def not_a_text(value: Any, key: str) -> str | None:
    """What to say of a value YAML read as a number or true/false where a text was wanted (``name: 2024``,
    ``contains: yes``), or None for any other value."""
    if isinstance(value, bool):
        return "true/false to YAML (as yes, no, on and off are), not a text: put the word in quotes"
    if isinstance(value, int | float):
        return f"{value!r} is a number to YAML, not a text: quote it ({key}: \"{value}\")"
    return None


def _problem(text: str, err: Any, unknown: str, model: type[BaseModel] | None) -> tuple[tuple[Any, ...], int, str]:
    loc = tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden" and model is not None and loc:
        unknown += did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]))
    key = next((str(p) for p in reversed(loc) if isinstance(p, str)), field)
    if err["type"] == "string_type" and (said := not_a_text(err.get("input"), key)):  # `name: 2024`
        return loc, yaml_line_for(text, loc) or 1, f"{field}: {said}"
    message = {"extra_forbidden": unknown, "missing": "required field is missing",
               "finite_number": "must be a number, not .nan or .inf",
               # `tools: calculator` read "Input should be a valid list", which does not say how to write one
               "list_type": "should be a list: [a, b], or one '- a' a line"}.get(
        err["type"], str(err["msg"]).removeprefix("Value error, "))  # a validator's own words, without pydantic's tag
    return loc, yaml_line_for(text, loc) or 1, f"{field}: {message}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` (a pydantic error location) under ``model``."""
    annotation: Any = model
    for part in loc:
        annotation = _model_in(annotation)
        if annotation is None:
            return []
        if isinstance(part, int):
            continue  # an item of a list: _model_in looks through list[...] already
        field = annotation.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
    found = _model_in(annotation)
    return list(found.model_fields) if found is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in an annotation (through ``X | None`` and ``list[X]``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
