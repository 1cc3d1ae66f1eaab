"""The Jinja sandbox halguru renders templates in (workflow templates and expressions, a model's chat template).

Jinja's sandbox stops attribute tricks and caps ``range``, but not what a template builds: ``"x" * 10**10``,
``[1] * 10**9`` or ``10**10**10`` allocate until the process dies. Here ``+``, ``*``, ``**`` and ``%`` are
intercepted (which also stops Jinja folding them at compile time) and refuse, before computing, a result over
MAX_ITEMS items or characters or an integer over MAX_INT_BITS bits; so do the other ways to ask for a size (a
filter's or a string method's number argument, a format width, ``replace``, the piece ``indent``, ``wordwrap``
and ``urlize`` add to each line or word), a namespace attribute that would hold more, and ``render`` past
MAX_ITEMS characters of output (a loop of big pieces): a SecurityError, one line.
Lists may hold one big string many times over (``[s] * 10**6`` costs 8 MB), so whatever turns values into text
(``~``, an output, a filter, a string method, ``%`` and ``format``, ``lipsum``) first counts what they hold
through their containers (``weight``; a string given as it is was bounded when built), and so does
``check_value`` for an expression's value; ``map``'s new strings are counted as a filter gathers them, and what
is compared (``==``, ``<``, ``in``, ``sort``, ``min``...) is weighed first, as one call reads it all.

Work is bounded too (rendering runs on the event loop, where no timeout can stop it): a render or an expression
may take MAX_STEPS steps, a loop iteration being one and a call (a macro, a function, a method, a recursive
``loop()``) CALL_STEPS, and run for MAX_SECONDS, checked at each step, filter and operator (a step over big
data: ``'y' in text`` 10 million characters long, 100,000 times; ``map``, a filter per item with no step).
Every ``for`` loop's iterable is wrapped in a counting iterator when the template is parsed, so a loop over
anything counts (lists, dicts, strings, ``batch``), as does a recursive ``loop(x)``'s iterable at its call;
calls count in ``call``, so recursion through macros does too. Filters take the render's context (for its time).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, generate_lorem_ipsum, pass_context

MAX_ITEMS = 10_000_000  # characters of a string, items of a list or tuple
MAX_INT_BITS = 100_000  # about 30,000 digits
MAX_STEPS = 1_000_000  # per render: ~0.2 s of Jinja's fastest loop
CALL_STEPS = 10  # a macro call or a recursive loop() takes ~10 times an empty loop's iteration
MAX_SECONDS = 2.0  # per render, for steps over big data; templates in use render in milliseconds
_COUNTED = "halguru_counted"  # the filter every for loop's iterable goes through (see BoundedSandbox._parse)
# printf-style fields whose width or precision makes long text: "%*s", "%0999999999d", "%.9999999f".
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d+)")  # "{:>999999999}".format(1)
_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]?")


_SIZED = (str, bytes, list, tuple)


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, _SIZED) else None


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _power_bits(base: int, exponent: int) -> int:
    """The bits of ``base ** exponent`` (|base| > 1) from its logarithm: the base's bit length times the exponent
    doubled 2**60000's 60,001 bits, refusing it."""
    try:
        return math.floor(exponent * math.log2(abs(base))) + 1
    except OverflowError:  # an exponent past a float's range: its bound is as good
        return exponent * _bits(base)


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what}; a template may build at most {MAX_ITEMS:,} items or characters "
                         f"and integers of {MAX_INT_BITS:,} bits")


_PER_LINE = frozenset({"indent", "wordwrap", "urlize"})  # see _check_per_line
# Filters that return their value's items (or a number) rather than text made from them: not weighed.
_NOT_TEXT = frozenset({"abs", "attr", "batch", "count", "d", "default", "dictsort", "first", "float", "groupby", "int",
                       "items", "last", "length", "list", "map", "max", "min", "reject", "rejectattr", "reverse",
                       "round", "select", "selectattr", "slice", "sort", "unique"})


def weight(value: Any, limit: int = MAX_ITEMS) -> int:
    """About how many characters ``value`` makes as text: its strings' characters and its items, counted through
    lists, tuples, sets, dicts and namespaces (a string held many times counts each time, as str() prints it);
    the count stops once past ``limit``, so it costs at most that many steps."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, int):
            total += _bits(item) // 3 + 1
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, dict):
            total += 2 * len(item) + 1
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item) + 1
            if total <= limit:
                stack.extend(item)
        else:
            total += 1
    return total


def _check_weight(what: str, *values: Any, extra: int = 0) -> None:
    if weight(values, MAX_ITEMS - extra) + extra > MAX_ITEMS:
        raise _too_big(f"{what} would make over {MAX_ITEMS:,} characters")


# Filters that take a generator's items one at a time, keeping none (map's output stays lazy through them).
_LAZY = frozenset({"first", "map", "reject", "rejectattr", "select", "selectattr"})


def _gathered(what: str, items: Iterator[Any]) -> list[Any]:
    """A generator's items (``map``'s new strings), gathered with what they hold counted: refused once past
    MAX_ITEMS, before the filter (list, join, tojson...) keeps them all."""
    gathered, total = [], 0
    for item in items:
        total += weight(item, MAX_ITEMS - total)
        if total > MAX_ITEMS:
            raise _too_big(f"{what}'s items would make over {MAX_ITEMS:,} characters")
        gathered.append(item)
    return gathered


# Filters that compare their value's items: comparing one long string held many times reads it each time, in
# one call the time limit cannot stop (sorting ['x' * 10**7] * 10**7 would take days).
_COMPARING = frozenset({"dictsort", "groupby", "max", "min", "sort", "unique"})


def _compared(value: Any, what: str = "a comparison") -> Any:
    """``value``, refused when comparing it could read over MAX_ITEMS characters (see _COMPARING)."""
    if isinstance(value, _HOLDERS) and weight(value) > MAX_ITEMS:
        raise _too_big(f"{what} would read over {MAX_ITEMS:,} characters")
    return value


def _check_join(what: str, separator: Any, items: Any, *rest: Any) -> None:
    """``separator.join(items)``: the items' text and a separator between each two."""
    count = len(items) if isinstance(items, str | list | tuple | set | frozenset | dict) else 0
    extra = len(separator) * count if isinstance(separator, str) else 0
    if extra > MAX_ITEMS:
        raise _too_big(f"{what} would make {extra:,} characters of separators")
    _check_weight(what, items, *rest, extra=extra)


_HOLDERS = (list, tuple, set, frozenset, dict, Namespace)


def check_value(value: Any) -> Any:
    """``value`` (an expression's, an output's), refused when its text (a step's output, a tool's arguments)
    would be too big. Only what holds other values is counted: a string, an integer is bounded as it is built."""
    if isinstance(value, _HOLDERS):
        _check_weight("the value", value)
    return value


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum``, refused when its paragraphs could pass MAX_ITEMS characters (about 12 per word)."""
    most = 12 * n * max if isinstance(n, int) and isinstance(max, int) else 0
    if most > MAX_ITEMS:
        raise _too_big(f"lipsum could make {most:,} characters")
    return str(generate_lorem_ipsum(n, html, min, max))


def _concat(pieces: tuple[Any, ...]) -> tuple[Any, ...]:
    """The operands of ``~``, refused before they are joined when their text would be too big."""
    if sum(len(p) if type(p) is str else MAX_ITEMS + 1 for p in pieces) > MAX_ITEMS:  # else short strings only
        _check_weight("'~'", *pieces)
    return pieces


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with the pieces of ``a ~ b`` weighed (``_concat``) before Jinja joins them."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:  # as Jinja's own visit_Concat
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"{join}(environment.concat_pieces((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")

    # ``a == b``, ``a < b``, ``a in b``: each side weighed first (_compared), as comparing runs in one call; a
    # constant (``role == "user"``) is not.
    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("(")
        self._compared(node.expr, frame)
        for op in node.ops:
            self.visit(op, frame)
        self.write(")")

    def visit_Operand(self, node: nodes.Operand, frame: Frame) -> None:
        self.write(f" {operators[node.op]} ")
        self._compared(node.expr, frame)

    def _compared(self, expr: nodes.Expr, frame: Frame) -> None:
        if isinstance(expr, nodes.Const):
            self.visit(expr, frame)
            return
        self.write("environment.compared(")
        self.visit(expr, frame)
        self.write(")")


def _check_format(text: str) -> None:
    for match in _WIDTH.finditer(text):
        for width in match.groups():
            if width == "*" or (width is not None and int(width) > MAX_ITEMS):
                raise _too_big(f"the format {match.group(0)!r} may make a result too large")


def _check_numbers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A number past MAX_ITEMS given to a filter or a string method is a size asked for (center, ljust, batch)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ITEMS:
            raise _too_big(f"the argument {value:,} asks for too much")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        most = len(text) + (len(text) // max(len(old), 1) + 1) * len(new)
        if most > MAX_ITEMS:
            raise _too_big(f"replace could make {most:,} characters")


def _check_per_line(name: str, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """indent, wordwrap and urlize add a piece to each line or word of their text (a width, a wrap string, a link's
    target): ``('a\\n' * 1000) | indent(10**7)`` would make 10**10 characters."""
    given = signature.bind_partial(*args, **kwargs).arguments
    text: str = given.get("s", given.get("value", ""))
    if name == "indent":
        width = given.get("width", 4)
        pieces, piece = text.count("\n") + 1, width if isinstance(width, int) else len(str(width))
    elif name == "wordwrap":  # two lines in a row hold more than ``width`` (the second's first word did not fit)
        width = given.get("width", 79)
        pieces = 2 * len(text) // max(width if isinstance(width, int) else 1, 1) + 2
        piece = len(str(given.get("wrapstring") or "\n"))
    else:  # urlize: each word (of 4 characters or more) may become a link: its text twice, target and rel
        pieces = min(text.count(" ") + text.count("\n") + text.count("\t"), len(text) // 4) + 1
        piece = 40 + sum(len(str(given.get(k) or "")) for k in ("target", "rel")) + len(text) // pieces
    most = len(text) + pieces * piece
    if most > MAX_ITEMS:
        raise _too_big(f"{name} could make {most:,} characters")


# What a filter takes before its value, from the render's context (see _bounded_filter).
_PASSED: dict[_PassArg | None, Callable[[Context], tuple[Any, ...]]] = {
    None: lambda context: (),
    _PassArg.context: lambda context: (context,),
    _PassArg.eval_context: lambda context: (context.eval_ctx,),
    _PassArg.environment: lambda context: (context.environment,),
}


def _bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` with its arguments checked, taking the render's context (its time is checked at each filter:
    ``map`` calls one per item, no step between) and passing on what ``original`` takes."""
    passed = _PASSED[_PassArg.from_obj(original)]
    skip = 2  # the context, then the value
    signature = inspect.signature(original)

    @pass_context
    @functools.wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if time.monotonic() > args[0].steps.deadline:  # in_time(), inline
            args[0].steps.in_time()
        if len(args) > skip or kwargs:
            _check_numbers(args[skip:], kwargs)
        value = args[skip - 1]
        # a generator's items are weighed as they are gathered: ([s] * 10**6) | map('upper') | join
        if type(value) is not str and isinstance(value, Iterator) and name not in _LAZY:
            value = _gathered(f"the filter {name}", value)
            args = (*args[:skip - 1], value, *args[skip:])
        if name in _COMPARING:
            _compared(value, f"the filter {name}")
        if name == "join":  # value, separator
            _check_join("join", args[skip] if len(args) > skip else kwargs.get("d", ""), value)
        elif name in _PER_LINE and isinstance(value, str):
            _check_per_line(name, signature, (*passed(args[0]), *args[1:]), kwargs)
        elif name not in _NOT_TEXT:  # a string given is not weighed: what it makes is about its size, as given
            weighed = (*([value] if isinstance(value, _HOLDERS) else []), *args[skip:], *kwargs.values())
            if weighed:  # else a plain value alone (text | trim): nothing to weigh
                _check_weight(f"the filter {name}", *weighed)
        if name == "replace" and len(args) >= skip + 2:
            _check_replace(str(args[skip - 1]), args[skip], args[skip + 1])
        elif name == "format":
            _check_format(str(args[skip - 1]))
        return original(*passed(args[0]), *args[1:], **kwargs)

    return bounded


def _timed_test(original: Any) -> Callable[..., Any]:
    """``original``, a Jinja test, with the render's time checked at each call: ``select('in', big)`` calls one per
    item, each reading a whole list, with no step between."""
    passed = _PASSED[_PassArg.from_obj(original)]

    @pass_context
    @functools.wraps(original)
    def timed(context: Any, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() > context.steps.deadline:  # in_time(), inline
            context.steps.in_time()
        return original(*passed(context), *args, **kwargs)

    return timed


class _Namespace(Namespace):
    """``namespace()``: an attribute may not hold more than an operator may build (``ns.s ~ ns.s`` in a loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if (_size(value) or 0) > MAX_ITEMS:
            raise _too_big(f"namespace attribute {name!r} would hold {_size(value):,} items or characters")
        super().__setitem__(name, value)


def _too_long(what: str) -> SecurityError:
    return SecurityError(f"{what}; a template may take at most {MAX_STEPS:,} steps (a loop iteration is one, "
                         f"a call {CALL_STEPS}) and run for {MAX_SECONDS:g} s")


class _Steps:
    """The steps one render has taken, shared with the contexts it derives (a scoped block's): none starts afresh."""

    __slots__ = ("count", "deadline")

    def __init__(self) -> None:
        self.count = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def take(self, steps: int = 1) -> None:
        self.count += steps
        if self.count > MAX_STEPS:
            raise _too_long("the template took too many steps")
        self.in_time()

    def in_time(self) -> None:
        """Checked at each step, filter and operator."""
        if time.monotonic() > self.deadline:
            raise _too_long("the template ran too long")


class _Context(Context):
    steps: _Steps

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps = _Steps()

    def derived(self, locals: dict[str, Any] | None = None) -> Context:
        context = super().derived(locals)
        context.steps = self.steps  # type: ignore[attr-defined]
        return context


@pass_context
def _counted(context: _Context, iterable: Any) -> Iterator[Any]:
    steps = context.steps
    for item in iterable:
        steps.take()
        yield item


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose templates cannot allocate or loop without bound (render them with ``render``)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    context_class = _Context
    code_generator_class = _CodeGenerator
    concat_pieces = staticmethod(_concat)
    compared = staticmethod(_compared)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_COUNTED] = _counted
        self.tests = {name: _timed_test(t) for name, t in self.tests.items()}
        self.globals["namespace"] = _Namespace
        self.globals["lipsum"] = _lipsum
        finalize = self.finalize  # an output is weighed before it becomes text (a list printed holds its strings)
        self.finalize = (lambda value: finalize(check_value(value))) if finalize else check_value

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template's tree, each ``for`` loop's iterable counted (Jinja has no per-iteration hook)."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None, lineno=loop.iter.lineno)
        return tree

    # Jinja's own names: a call's keyword arguments may be named self, context or obj.
    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __context.steps.take(CALL_STEPS)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level: loop(item.children)
            args = (_counted(__context, args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes):  # "x".ljust(10**9), "x".replace("x", long), "-".join(many)
            _check_numbers(args, kwargs)
            method = getattr(__obj, "__name__", "")
            if method == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            elif method == "join" and args:
                if isinstance(args[0], Iterator):
                    args = (_gathered("the method join", args[0]), *args[1:])
                _check_join("join", owner, *args)
            else:
                _check_weight(f"the method {method}", *args, *kwargs.values())  # the string's own size is bounded
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        spec = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            for width in _FORMAT_WIDTH.findall(spec):
                if int(width) > MAX_ITEMS:
                    raise _too_big(f"the format width {int(width):,} asks for too much")
            _check_weight("format", spec, *args, *kwargs.values())
            return wrapped(*args, **kwargs)

        return checked

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if time.monotonic() > context.steps.deadline:  # in_time(), inline: operators are a chat template's hot path
            context.steps.in_time()
        if operator_ == "*":
            size, count = (_size(left), right) if _size(left) is not None else (_size(right), left)
            if size is not None and isinstance(count, int) and size * count > MAX_ITEMS:
                raise _too_big(f"'*' would make {size * count:,} items or characters")
            if _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _too_big("'*' would make an integer too large")
        elif operator_ == "+":  # a chat template's most common operator: no call before its check
            if isinstance(left, _SIZED) and isinstance(right, _SIZED) and len(left) + len(right) > MAX_ITEMS:
                raise _too_big(f"'+' would make {len(left) + len(right):,} items or characters")
        elif operator_ == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                    and (bits := _power_bits(left, right)) > MAX_INT_BITS:
                raise _too_big(f"'**' would make an integer of about {bits:,} bits")
        elif operator_ == "%" and isinstance(left, str):
            _check_format(left)
            _check_weight("'%'", left, right)
        return super().call_binop(context, operator_, left, right)


def render(template: Any, context: dict[str, Any]) -> str:
    """``template.render(context)``, refused past MAX_ITEMS characters (each piece is bounded; a loop is not)."""
    parts: list[str] = []
    size = 0
    for piece in template.generate(context):
        size += len(piece)
        if size > MAX_ITEMS:
            raise _too_big(f"the output passes {MAX_ITEMS:,} characters")
        parts.append(piece)
    return "".join(parts)

