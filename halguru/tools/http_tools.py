"""Tools declared in agent.yaml that call an HTTP API: a request template, or one OpenAPI operation.

The agent's author writes the URL (trusted configuration); the model only fills in arguments, which go
percent-encoded into path segments, or into the query string, headers or body, so it can never change the
host or the structure of the path. Problems in the declaration are AgentSpecErrors at load (file:line);
problems of a call (missing secret, HTTP status, network) are ToolErrors the model is told about.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import quote

import yaml

from halguru.config import get_settings
from halguru.errors import AgentSpecError, ToolError
from halguru.models.secrets import expand_secrets, lookup_secret
from halguru.tools.netpin import fetch, pinned_client
from halguru.tools.schema_tool import SchemaTool, schema_tool
from halguru.yamlfile import yaml_line_for

if TYPE_CHECKING:
    import httpx

    from halguru.tools.settings import HTTPToolAuth, HTTPToolSettings

ERROR_BODY_CHARS = 300
INLINE_LIMIT = 50_000  # nodes of one operation's schema with its $refs inlined
MIN_MASKED = 8  # characters: shorter values of ${NAME} in headers are not hidden in results (see _maskable)
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_ORIGIN = re.compile(r"^(https?)://[^/?#]+", re.IGNORECASE)
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

Location = Literal["path", "query", "header", "body", "whole"]
_Operations = dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]]  # operationId -> method, path, operation, item
_Document = tuple[dict[str, Any], _Operations]


@dataclass(frozen=True)
class _Plan:
    """How one tool turns its arguments into a request."""

    method: str
    url: str  # absolute; {name} placeholders are filled with the argument ``name``
    routes: dict[str, tuple[Location, str]]  # argument -> (where it goes, its name on the wire)
    rest: Location | None  # where undeclared arguments go (templates), None: dropped
    body_kind: Literal["json", "form"] = "json"
    headers: dict[str, str] = field(default_factory=dict)
    auth: HTTPToolAuth | None = None
    timeout: float = 30.0
    secrets: tuple[str, ...] = ()  # the values ${NAME} put in headers: never shown


class _Where:
    """Builds load errors that point at one http_tools entry: ``agent.yaml:LINE: http_tools.N.FIELD: ...``."""

    def __init__(self, agent_file: Path, index: int):
        self.agent_file, self.index = agent_file, index

    def error(self, field_name: str, message: str) -> AgentSpecError:
        try:
            text = self.agent_file.read_text(encoding="utf-8")
        except OSError:
            text = ""
        line = yaml_line_for(text, ("http_tools", self.index, field_name)) or 1
        return AgentSpecError(f"{self.agent_file}:{line}: http_tools.{self.index}.{field_name}: {message}")


def http_tools(settings_list: list[HTTPToolSettings], base: Path, agent_file: Path) -> dict[str, SchemaTool]:
    """Build the agent's declared HTTP tools; ``base`` is the folder OpenAPI paths are relative to."""
    tools: dict[str, SchemaTool] = {}
    documents: dict[Path, _Document] = {}  # one document read (and its operations found) once, for all its tools
    for index, settings in enumerate(settings_list):
        where = _Where(agent_file, index)
        if settings.name in tools:
            raise where.error("name", f"{settings.name!r} is declared twice")
        if settings.openapi is not None:
            plan, schema, description = _openapi_tool(settings, base, where, documents)
        else:
            plan, schema, description = _template_tool(settings, where)
        tools[settings.name] = _tool(settings.name, description, schema, plan)
    return tools


def _tool(name: str, description: str, schema: dict[str, Any], plan: _Plan) -> SchemaTool:
    async def call(arguments: dict[str, Any]) -> str:
        return await _send(name, plan, arguments)

    # A little longer than the request's own timeout, so the clearer HTTP timeout message wins.
    return schema_tool(name, description, schema, call, timeout=plan.timeout + 5)


# ---------------------------------------------------------------- declarations


def _check_url(url: str, where: _Where, field_name: str = "url") -> None:
    origin = _ORIGIN.match(url)
    if origin is None:
        raise where.error(field_name, f"{url!r} is not an absolute http(s) URL")
    if "{" in origin.group(0):
        raise where.error(field_name, "placeholders may stand only in the path or the query, so the model "
                          "cannot choose the host")


def _headers(settings: HTTPToolSettings, where: _Where) -> tuple[dict[str, str], tuple[str, ...]]:
    """The declared headers with each ``${NAME}`` replaced by the secret NAME (as MCP servers' headers), and the
    secrets' values; one that is not set is a load error naming it."""
    headers: dict[str, str] = {}
    used: list[str] = []
    for key, value in settings.headers.items():
        try:
            headers[key] = expand_secrets(value, used)
        except ValueError as exc:
            raise where.error("headers", f"{key}: {exc}") from None
        if "\r" in headers[key] or "\n" in headers[key]:
            raise where.error("headers", f"{key}: a secret in it contains a line break")
    return headers, _maskable(used)


def _maskable(values: list[str]) -> tuple[str, ...]:
    """The secrets' values to hide in what a call returns, the longest first (one may hold another). A value under
    MIN_MASKED characters is no secret worth the name (``${DEBUG}`` = ``1``, ``on``), and hiding it hid every
    ``1`` of every answer."""
    return tuple(sorted({v.strip() for v in values if len(v.strip()) >= MIN_MASKED}, key=len, reverse=True))


def _placeholders(url: str) -> list[str]:
    return list(dict.fromkeys(_PLACEHOLDER.findall(url)))


def _template_tool(settings: HTTPToolSettings, where: _Where) -> tuple[_Plan, dict[str, Any], str]:
    import jsonschema

    assert settings.url is not None  # the spec requires url or openapi
    _check_url(settings.url, where)
    schema = copy.deepcopy(settings.parameters)  # the tool owns its schema
    if schema.setdefault("type", "object") != "object":
        raise where.error("parameters", "must be a JSON schema of type object (the arguments)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise where.error("parameters", f"not a valid JSON schema: {exc.message}") from None
    properties = schema.setdefault("properties", {})
    required = schema.setdefault("required", [])
    routes: dict[str, tuple[Location, str]] = {}
    for name in _placeholders(settings.url):
        properties.setdefault(name, {"type": "string"})  # {city} alone is enough to declare a string
        if name not in required:
            required.append(name)
        routes[name] = ("path", name)
    rest: Location = "query" if settings.method in ("GET", "DELETE") else "body"
    headers, secrets = _headers(settings, where)
    plan = _Plan(settings.method, settings.url, routes, rest, headers=headers, auth=settings.auth,
                 timeout=settings.timeout, secrets=secrets)
    description = settings.description or f"{settings.method} {settings.url}"
    return plan, schema, description


def _read_document(path: Path, where: _Where) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise where.error("openapi", f"{path} does not exist") from None
    except OSError as exc:
        raise where.error("openapi", f"cannot read {path} ({exc.strerror})") from None
    try:
        doc = _parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise where.error("openapi", f"{path}{at}: invalid YAML or JSON: {getattr(exc, 'problem', None) or exc}"
                          ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise where.error("openapi", f"{path} is not an OpenAPI document (no paths:)")
    if not str(doc.get("openapi", "")).startswith("3."):
        found = f"swagger {doc['swagger']}" if "swagger" in doc else "no openapi: version"
        raise where.error("openapi", f"{path}: only OpenAPI 3 documents are supported ({found})")
    return doc


def _parse(text: str) -> Any:
    """A JSON document read as JSON, YAML with libyaml where it is built in: PyYAML's pure-Python parser took 55 s
    over a 2.8 MB JSON document of 10,000 operations (JSON: 0.5 s)."""
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):  # not JSON after all (YAML's flow style): YAML says what is wrong
            return json.loads(text)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # safe either way


def _operations(doc: dict[str, Any]) -> _Operations:
    """operationId -> (method, path, operation, path item)."""
    found: _Operations = {}
    for path, item in doc["paths"].items():
        if not isinstance(item, dict):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict) and isinstance(operation.get("operationId"), str):
                found[operation["operationId"]] = (method.upper(), str(path), operation, item)
    return found


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref (#/...) are supported, not {ref!r}")
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"$ref {ref!r} points at nothing")
    return node


def _inline(doc: dict[str, Any], node: Any, stack: tuple[object, ...] = (), budget: list[int] | None = None) -> Any:
    """``node`` with every local $ref replaced by its target: the model gets one self-contained schema.

    A recursive schema (by $ref, or a YAML alias inside itself) is cut where it recurses (an empty schema there
    accepts anything). Inlining copies what is shared, so refs that each use the next twice grow exponentially:
    past INLINE_LIMIT nodes it is an error, not a load that never ends.
    """
    budget = [INLINE_LIMIT] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"its schemas are too large once their $refs are inlined (over {INLINE_LIMIT} nodes); "
                         "declare a url template with the arguments the model needs instead")
    if isinstance(node, dict | list):
        if id(node) in stack:  # a YAML alias inside its own anchor
            return {}
        stack = (*stack, id(node))
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return {} if ref in stack else _inline(doc, _pointer(doc, ref), (*stack, ref), budget)
        return {key: _inline(doc, value, stack, budget) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(doc, value, stack, budget) for value in node]
    return node


def _base_url(settings: HTTPToolSettings, doc: dict[str, Any], where: _Where) -> str:
    if settings.url is not None:
        _check_url(settings.url, where)
        return settings.url
    servers = doc.get("servers")
    server = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else {}
    url = str(server.get("url", ""))
    variables = server.get("variables")
    variables = variables if isinstance(variables, dict) else {}

    def default(match: re.Match[str]) -> str:
        variable = variables.get(match.group(1))
        return str(variable["default"]) if isinstance(variable, dict) and "default" in variable else match.group(0)

    url = _PLACEHOLDER.sub(default, url)  # a variable without a default stays: refused below
    if not _ORIGIN.match(url) or "{" in url:
        found = f"servers[0].url is {url!r}" if url else "it has no servers[0].url"
        raise where.error("openapi", f"{settings.openapi}: {found}; give url: the API's absolute base URL")
    return url


def _openapi_tool(settings: HTTPToolSettings, base: Path, where: _Where,
                  documents: dict[Path, _Document]) -> tuple[_Plan, dict[str, Any], str]:
    assert settings.openapi is not None and settings.operation is not None  # the spec requires both
    path = (base / settings.openapi).resolve()
    if path not in documents:
        doc = _read_document(path, where)
        documents[path] = doc, _operations(doc)  # per tool, 100 tools of 10,000 operations took 15 s
    doc, operations = documents[path]
    if settings.operation not in operations:
        names = sorted(operations)
        shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        raise where.error("operation", f"no operation {settings.operation!r} in {settings.openapi} "
                          f"(available: {shown or 'none with an operationId'})")
    method, url_path, operation, item = operations[settings.operation]
    try:
        schema, routes, body_kind = _arguments(doc, url_path, operation, item)
    except ValueError as exc:
        raise where.error("operation", f"{settings.operation} in {settings.openapi}: {exc}") from None
    except (AttributeError, TypeError, RecursionError) as exc:  # a list or text where the spec wants an object
        raise where.error("operation", f"{settings.operation} in {settings.openapi} is not a valid OpenAPI "
                          f"operation ({type(exc).__name__}: {exc})") from None
    url = _base_url(settings, doc, where).rstrip("/") + "/" + url_path.lstrip("/")
    summary = " ".join(str(operation.get(k) or "").strip() for k in ("summary", "description")).strip()
    description = settings.description or summary[:1000] or f"{method} {url_path}"
    headers, secrets = _headers(settings, where)
    plan = _Plan(method, url, routes, None, body_kind, headers, settings.auth, settings.timeout, secrets)
    return plan, schema, description


def _arguments(doc: dict[str, Any], url_path: str, operation: dict[str, Any], item: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, tuple[Location, str]], Literal["json", "form"]]:
    """The JSON schema of an operation's arguments (its parameters, then its body) and where each one goes."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    routes: dict[str, tuple[Location, str]] = {}
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*(item.get("parameters") or []), *(operation.get("parameters") or [])]:
        param = _inline(doc, raw)  # the operation's own parameters override the path item's
        if isinstance(param, dict) and "name" in param and "in" in param:
            declared[(str(param["name"]), str(param["in"]))] = param
    for (name, location), param in declared.items():
        if location not in ("path", "query", "header"):
            raise ValueError(f"parameter {name!r} in {location} is not supported")
        if name in routes:
            raise ValueError(f"parameter name {name!r} is used twice (path, query or header)")
        schema = param.get("schema")
        if schema is None and isinstance(param.get("content"), dict):  # a parameter serialized as JSON etc.
            first: dict[str, Any] = next(iter(param["content"].values()), {})
            schema = first.get("schema")
        schema = dict(schema or {"type": "string"})
        if param.get("description") and "description" not in schema:
            schema["description"] = str(param["description"])
        properties[name] = schema
        routes[name] = (cast(Location, location), name)  # one of path, query, header: checked above
        if location == "path" or param.get("required"):
            required.append(name)
    for name in _placeholders(url_path):
        if name not in routes:  # a sloppy document: still a required path argument
            properties[name], routes[name] = {"type": "string"}, ("path", name)
            required.append(name)
    body_kind: Literal["json", "form"] = "json"
    body = _inline(doc, operation.get("requestBody"))
    if isinstance(body, dict) and isinstance(body.get("content"), dict) and body["content"]:
        content = body["content"]
        media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
        if media is None and "application/x-www-form-urlencoded" in content:
            media, body_kind = "application/x-www-form-urlencoded", "form"
        if media is None:
            raise ValueError(f"requestBody: only JSON or form bodies are supported (found {', '.join(content)})")
        body_schema = (content[media] or {}).get("schema") or {}
        fields = body_schema.get("properties") if isinstance(body_schema, dict) else None
        extra = body_schema.get("additionalProperties") if isinstance(body_schema, dict) else None
        if (isinstance(fields, dict) and fields and not set(fields) & set(routes)
                and body_schema.get("type", "object") == "object" and not (extra is True or isinstance(extra, dict))):
            # An object body becomes top-level arguments: small models fill flat arguments best.
            for name, schema in fields.items():
                properties[name], routes[name] = schema, ("body", name)
            required += [n for n in body_schema.get("required") or [] if n in fields]
        else:
            name = "body" if "body" not in routes else "request_body"
            properties[name], routes[name] = body_schema, ("whole", name)
            if body.get("required"):
                required.append(name)
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(dict.fromkeys(required))
    return schema, routes, body_kind


# ---------------------------------------------------------------- calls


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _fill(template: str, values: dict[str, Any]) -> str:
    """The URL with each placeholder replaced by its argument, percent-encoded as one segment or value."""
    query_at = template.find("?")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ToolError(f"missing argument {name!r} (it is part of the URL)")
        text = _text(values[name])
        in_path = query_at < 0 or match.start() < query_at
        if in_path and text in ("", ".", ".."):
            # Dot segments would be resolved away and an empty one changes the path: refused, not guessed.
            raise ToolError(f"argument {name!r} cannot be {text!r}: it is one segment of the URL path")
        return quote(text, safe="")

    return _PLACEHOLDER.sub(replace, template)


def _request(plan: _Plan, arguments: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(URL, headers, extra httpx.request arguments) for one call."""
    import httpx

    path: dict[str, Any] = {}
    query: dict[str, Any] = {}
    headers = dict(plan.headers)
    body: dict[str, Any] = {}
    whole: list[Any] = []
    for name, value in arguments.items():
        location, key = plan.routes.get(name, (plan.rest, name))
        if value is None or location is None:
            continue
        if location == "path":
            path[key] = value
        elif location == "query":
            query[key] = [_text(v) for v in value] if isinstance(value, list) else _text(value)
        elif location == "header":
            text = _text(value)
            if "\r" in text or "\n" in text:
                raise ToolError(f"argument {name!r} is a header value: it must be one line")
            headers[key] = text
        elif location == "body":
            body[key] = value
        else:
            whole.append(value)
    url = str(httpx.URL(_fill(plan.url, path)).copy_merge_params(query)) if query else _fill(plan.url, path)
    extra: dict[str, Any] = {}
    payload = whole[0] if whole else (body or None)
    if payload is not None:
        if plan.body_kind == "form" and isinstance(payload, dict):
            extra["data"] = {k: _text(v) for k, v in payload.items()}
        else:
            extra["json"] = payload
    return url, headers, extra


async def _secret(tool: str, auth: HTTPToolAuth) -> str:
    secret = os.environ.get(auth.secret) or await asyncio.to_thread(lookup_secret, auth.secret)
    if not secret:
        raise ToolError(f"{tool}: the secret {auth.secret} is not set; set the environment variable "
                        f"{auth.secret} or store it with `keyring set halguru {auth.secret}`")
    secret = secret.strip()
    if "\r" in secret or "\n" in secret:
        raise ToolError(f"{tool}: the secret {auth.secret} contains a line break")
    return secret


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _one_line(text: str, limit: int = ERROR_BODY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _result(response: httpx.Response, text: str) -> str:
    if not text.strip():
        return f"HTTP {response.status_code} (no content)"
    if "json" in response.headers.get("content-type", ""):
        with contextlib.suppress(ValueError):  # mislabelled or cut: the text as it came
            text = json.dumps(json.loads(text), ensure_ascii=False)
    return text  # cut to MAX_RESULT_CHARS by execute_tool, as every tool's result


async def _send(tool: str, plan: _Plan, arguments: dict[str, Any]) -> str:
    import httpx

    url, headers, extra = _request(plan, arguments)
    secrets = plan.secrets
    if plan.auth is not None:
        secret = await _secret(tool, plan.auth)
        # The auth secret is one by declaration: hidden whatever its length.
        secrets = tuple(sorted({secret, *secrets}, key=len, reverse=True))  # the longest first: one may hold another
        # Set last: no argument can replace the auth header.
        headers[plan.auth.header] = f"{plan.auth.scheme} {secret}" if plan.auth.scheme else secret
    where = f"{plan.method} {url}"
    # The host comes from agent.yaml (the author's, not the model's). An IP address or localhost written there
    # is meant; a name is resolved once and must be public (as for http_get), and the connection goes to that
    # checked address, so a rebinding DNS answer cannot turn a public API into a private one.
    host = httpx.URL(url).host
    refuse = not (get_settings().http_allow_private or host == "localhost" or _is_ip(host))
    try:
        # timeout: bounds the whole request too (httpx's bounds each read: a body trickling in would not end).
        async with asyncio.timeout(plan.timeout), \
                pinned_client(refuse, timeout=plan.timeout, follow_redirects=False) as client:
            response, text = await fetch(client, plan.method, url, headers=headers, **extra)
    except ToolError as exc:
        raise ToolError(f"{where}: {exc}") from None
    except (httpx.TimeoutException, TimeoutError):
        raise ToolError(f"{where} timed out after {plan.timeout:g}s") from None
    except Exception as exc:
        # Hidden before the line is cut: a cut could leave the start of a secret unmatched.
        raise ToolError(_one_line(_hidden(f"{where} failed: {type(exc).__name__}: {exc}", secrets), 500)) from None
    if not response.is_success:
        moved = f" (redirects to {response.headers['location']})" if response.has_redirect_location else ""
        body = _one_line(_hidden(text, secrets))
        raise ToolError(_hidden(f"HTTP {response.status_code} from {where}{moved}", secrets)
                        + (f": {body}" if body else ""))
    return _hidden(_result(response, text), secrets)


def _hidden(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each secret's value as ``***``: an API that echoes the request's headers (in an error page,
    a debug endpoint) put it in the trace and before the model."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
