"""The Jinja sandbox halguru renders templates in (workflow templates and expressions, a model's chat template).

Jinja's sandbox stops attribute tricks and caps ``range``, but not what an operator builds: ``"x" * 10**10``,
``[1] * 10**9`` or ``10**10**10`` allocate until the process dies. Here ``+``, ``*``, ``**`` and ``%`` are
intercepted (which also stops Jinja folding them at compile time) and refuse, before computing, a result over
MAX_ITEMS items or characters or an integer over MAX_INT_BITS bits: a SecurityError, one line.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_ITEMS = 10_000_000  # characters of a string, items of a list or tuple
MAX_INT_BITS = 100_000  # about 30,000 digits
# printf-style fields whose width or precision makes long text: "%*s", "%0999999999d", "%.9999999f".
_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]?")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what}; a template may build at most {MAX_ITEMS:,} items or characters "
                         f"and integers of {MAX_INT_BITS:,} bits")


def _check_format(text: str) -> None:
    for match in _WIDTH.finditer(text):
        for width in match.groups():
            if width == "*" or (width is not None and int(width) > MAX_ITEMS):
                raise _too_big(f"the format {match.group(0)!r} may make a result too large")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose operators cannot allocate without bound."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters["format"] = self._format_filter(self.filters["format"])

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            size, count = (_size(left), right) if _size(left) is not None else (_size(right), left)
            if size is not None and isinstance(count, int) and size * count > MAX_ITEMS:
                raise _too_big(f"'*' would make {size * count:,} items or characters")
            if _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _too_big("'*' would make an integer too large")
        elif operator_ == "+":
            sizes = (_size(left), _size(right))
            if sizes[0] is not None and sizes[1] is not None and sizes[0] + sizes[1] > MAX_ITEMS:
                raise _too_big(f"'+' would make {sizes[0] + sizes[1]:,} items or characters")
        elif operator_ == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                    and _bits(left) * right > MAX_INT_BITS:
                raise _too_big(f"'**' would make an integer of about {_bits(left) * right:,} bits")
        elif operator_ == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator_, left, right)

    @staticmethod
    def _format_filter(original: Any) -> Any:
        def do_format(value: Any, *args: Any, **kwargs: Any) -> Any:  # "%s"|format(x): the '%' operator's check
            _check_format(str(value))
            return original(value, *args, **kwargs)

        return do_format

