"""The sandbox organisers' notice templates render in, with a budget for every render.

Jinja's immutable sandbox already refuses dunders and mutation; on top of it every render gets a
`Budget` (a context variable) that is charged inside the sandbox, before the work is done:

* loop iterations (every `{% for %}` iterable is wrapped by an AST rewrite after parsing, and a
  recursive loop's `loop(...)` calls are wrapped in `call`);
* calls (macros, methods, filters) and the depth of nested macro calls (recursive macros);
* wall time, checked on each of those steps;
* the size of every string or list an operation would build (`*`, `+`, `%`, `~`, `str.format`,
  `center`, `indent`, `join`, `replace`, ...), refused before it is allocated, and the total of
  all such results, so a doubling macro stops long before it costs memory.

At most `SLOTS` renders run at once in a process (`slot`), so a burst of saves cannot take every
CPU from the other requests. `describe` turns any exception of a render into a Chinese message
and the template line it came from.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    pass_eval_context,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from states.errors import RateLimited

MAX_OUTPUT = 20_000  # characters (or items) one value may have
MAX_TOTAL = 1_000_000  # characters all checked operations of one render may build together
MAX_RANGE = 500
MAX_LOOPS = 10_000  # loop iterations per render
MAX_CALLS = 10_000  # calls, filters and guarded operators per render
MAX_DEPTH = 20  # nested macro calls
MAX_INT_BITS = 4096
TIME_LIMIT = 0.2  # seconds of wall time per render
SLOTS = 1  # renders at once per process
BUSY_WAIT = 3.0  # seconds a save waits for a slot before "busy"


class BudgetExceeded(SecurityError):
    """A render ran out of its budget (time, loops, calls, depth or size)."""


class Budget:
    """What one render may still spend."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.loops = 0
        self.calls = 0
        self.depth = 0
        self.total = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"模板渲染超时（上限 {self.seconds:g} 秒）")

    def loop(self) -> None:
        self.loops += 1
        if self.loops > MAX_LOOPS:
            raise BudgetExceeded(f"模板循环次数过多（上限 {MAX_LOOPS} 次）")
        self.check_time()

    def call(self) -> None:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise BudgetExceeded(f"模板调用次数过多（上限 {MAX_CALLS} 次）")
        self.check_time()

    def charge(self, size: int) -> None:
        self.total += size
        if self.total > MAX_TOTAL:
            raise BudgetExceeded("模板生成的内容过多")


_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def _budget() -> Budget:
    """The running render's budget; outside a render (compile-time folding) a fresh one."""
    return _BUDGET.get() or Budget(TIME_LIMIT)


@contextmanager
def budget(seconds: float = TIME_LIMIT) -> Iterator[Budget]:
    """Run a render under a fresh budget."""
    b = Budget(seconds)
    token = _BUDGET.set(b)
    try:
        yield b
    finally:
        _BUDGET.reset(token)


_SLOTS = threading.BoundedSemaphore(SLOTS)
_HELD: ContextVar[bool] = ContextVar("render_slot_held", default=False)


def busy() -> RateLimited:
    return RateLimited("服务器繁忙，请稍后再试（模板渲染排队已满）", retry_after=5)


def try_slot() -> bool:
    """Take a render slot if one is free now (for callers that wait without a thread)."""
    return _SLOTS.acquire(blocking=False)


def release_slot() -> None:
    _SLOTS.release()


@contextmanager
def holding_slot() -> Iterator[None]:
    """Mark that the caller already holds a slot (taken with `try_slot`), so `slot` passes."""
    token = _HELD.set(True)
    try:
        yield
    finally:
        _HELD.reset(token)


@contextmanager
def slot(wait: float | None = BUSY_WAIT) -> Iterator[None]:
    """Hold one of the process's render slots; `RateLimited` if none frees within `wait`
    seconds (None: wait as long as it takes; renders are short, so that is not long)."""
    if _HELD.get():
        yield
        return
    got = _SLOTS.acquire() if wait is None else _SLOTS.acquire(timeout=wait)
    if not got:
        raise busy()
    try:
        with holding_slot():
            yield
    finally:
        _SLOTS.release()


# -- sizes, checked before an operation builds its result ------------------------------------


def _too_big() -> BudgetExceeded:
    return BudgetExceeded(f"模板生成的内容过长（每个值最多 {MAX_OUTPUT} 字）")


def _need(size: int) -> None:
    """Refuse an operation whose result would have `size` characters or items."""
    if size > MAX_OUTPUT:
        raise _too_big()
    _budget().charge(size)


def _result(value: Any) -> Any:
    """Check the size of a result whose bound was known only roughly beforehand."""
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_OUTPUT:
        raise _too_big()
    return value


def weight(value: Any, limit: int = MAX_OUTPUT) -> int:
    """Roughly how many characters `str(value)` would have, counted up to just past `limit`
    (so measuring a huge nested list costs no more than `limit` steps)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        v = stack.pop()
        if isinstance(v, str | bytes):
            total += len(v)
        elif isinstance(v, list | tuple | set | frozenset):
            total += 1 + len(v)
            stack.extend(v)
        elif isinstance(v, dict):
            total += 1 + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        else:
            total += 1
    return total


def _light(*values: Any) -> None:
    """Refuse to read a value that would print longer than the output limit (a list of lists
    of long strings, say: `{{ c }}` or `c|string` would build it in one go)."""
    for v in values:
        if not isinstance(v, int | float | bool | types.NoneType) and weight(v) > MAX_OUTPUT:
            raise _too_big()


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` passes here before it is turned into text."""
    _light(value)
    return value


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?")


def _check_printf(fmt: str) -> None:
    """`'%0999999999d' % 1`: refuse widths and precisions over the limit, and `*`."""
    for width, prec in _PRINTF.findall(fmt):
        for n in (width, prec):
            if n == "*" or (n and int(n) > MAX_OUTPUT):
                raise _too_big()
    _need(len(fmt))


def _check_format(fmt: str) -> None:
    """`'{:>999999999}'.format(1)`: the same for str.format, and no nested fields in a spec."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise ValueError(f"格式字符串有误：{exc}") from exc
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise BudgetExceeded("格式说明中不允许嵌套 {}")
        if spec and any(int(n) > MAX_OUTPUT for n in re.findall(r"\d+", spec)):
            raise _too_big()
    _need(len(fmt))


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _width(value: Any, width: Any = 80, *_: Any, **__: Any) -> int:
    return max(weight(value), _as_int(width, 0))


def _indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = str(value)
    unit = len(width) if isinstance(width, str) else _as_int(width, 0)
    return len(text) + (text.count("\n") + 1) * max(unit, 0)


def _wordwrap(
    value: Any, width: Any = 79, _b: Any = True, wrapstring: Any = None, *_: Any, **kw: Any
) -> int:
    text = str(value)
    sep = kw.get("wrapstring", wrapstring)
    pieces = len(text) // max(_as_int(kw.get("width", width), 1), 1) + text.count(" ") + 1
    return len(text) + pieces * (len(str(sep)) if sep is not None else 2)


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> int:
    text, old_s, new_s = str(value), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None and _as_int(count, -1) >= 0:
        hits = min(hits, _as_int(count, 0))
    return len(text) + hits * max(0, len(new_s) - len(old_s))


def _format_filter(value: Any, *_: Any, **__: Any) -> int:
    _check_printf(str(value))
    return 0


def _count_arg(limit: int) -> Callable[..., int]:
    def check(value: Any, n: Any = 0, *_: Any, **__: Any) -> int:
        if _as_int(n, 0) > limit:
            raise _too_big()
        return 0

    return check


# Filters that could build a large value from small arguments: the size they would produce.
_SIZED_FILTERS: dict[str, Callable[..., int]] = {
    "center": _width,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format_filter,
    "batch": _count_arg(MAX_OUTPUT),
    "slice": _count_arg(MAX_RANGE),
    "truncate": lambda value, *_, **__: weight(value) + 3,
}


def _materialised(value: Any) -> list[Any]:
    items = []
    for item in value:
        items.append(item)
        if len(items) > MAX_OUTPUT:
            raise _too_big()
    return items


def _join_size(items: list[Any], sep: Any = "", *_: Any, **__: Any) -> int:
    return weight(items) + weight(sep) * max(len(items) - 1, 0)


def _sum_size(items: list[Any], attribute: Any = None, start: Any = 0) -> int:
    if not isinstance(start, list | tuple | str):
        return 0
    if attribute is not None:
        raise BudgetExceeded("sum 的 start 为列表时不能再指定 attribute")
    return weight(start) + weight(items)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: count the call, check the size it would build, check the result."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    sized = _SIZED_FILTERS.get(name)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().call()
        head, rest = list(args[: skip + 1]), args[skip + 1 :]
        if name not in ("join", "sum"):
            _light(*head[skip:], *rest, *kwargs.values())
        if name in ("join", "sum") and len(head) > skip:
            head[skip] = _materialised(head[skip])
            measure = _join_size if name == "join" else _sum_size
            _need(measure(head[skip], *rest, **kwargs))
        elif sized is not None and len(head) > skip:
            _need(sized(head[skip], *rest, **kwargs))
        return _result(func(*head, *rest, **kwargs))

    return guarded


_STR_SIZES: dict[str, Callable[..., int]] = {
    "center": _width,
    "ljust": _width,
    "rjust": _width,
    "zfill": _width,
    "expandtabs": lambda value, tabsize=8, **_: len(value) * max(_as_int(tabsize, 8), 1),
    "replace": _replace,
}


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size checks for str/bytes methods (and `int.to_bytes`) before they run."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, int) and name == "to_bytes":
        raise BudgetExceeded("模板中不允许 to_bytes")
    if not isinstance(owner, str | bytes):
        return args
    if name == "join" and args:
        items = _materialised(args[0])
        _need(_join_size(items, owner))
        return (items, *args[1:])
    sized = _STR_SIZES.get(name)
    if sized is not None:
        _need(sized(owner, *args, **kwargs))
    return args


def _guard_loop(iterable: Any) -> Iterator[Any]:
    """Every iteration of a template loop is charged to the render's budget."""
    b = _budget()
    for item in iterable:
        b.loop()
        yield item


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


_CONTEXT_KWARGS = ("_loop_vars", "_block_vars", "caller")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, strict undefined, plain data, and the budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, autoescape: bool) -> None:
        super().__init__(
            loader=BaseLoader(),
            undefined=StrictUndefined,
            autoescape=autoescape,
            finalize=_finalize,
        )
        self.globals = {"range": _small_range}
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.dj_loop = _guard_loop
        self.dj_concat = _concat

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().call()
        if operator == "**":
            raise SecurityError("模板中不允许乘方运算")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and n > 0:
                    _need(weight(seq, MAX_OUTPUT // n + 1) * n)
            if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
                raise BudgetExceeded("模板中的整数过大")
        elif operator == "+" and isinstance(left, str | list | tuple):
            if isinstance(right, str | list | tuple):
                _need(weight(left) + weight(right))
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
            _light(right)
        return _result(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt)
            _light(*args, *kwargs.values())
            return str(_result(wrapped(*args, **kwargs)))

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        b = _budget()
        b.call()
        _light(*args, *(v for k, v in kwargs.items() if k not in _CONTEXT_KWARGS))
        if isinstance(__obj, LoopContext) and args:
            args = (_guard_loop(args[0]), *args[1:])
        if isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            args = _check_method(__obj, args, kwargs)
        if not isinstance(__obj, Macro | LoopContext):
            return _result(super().call(__context, __obj, *args, **kwargs))
        if b.depth >= MAX_DEPTH:
            raise BudgetExceeded(f"宏或递归循环嵌套过深（最多 {MAX_DEPTH} 层）")
        b.depth += 1
        try:
            out = super().call(__context, __obj, *args, **kwargs)
        finally:
            b.depth -= 1
        _need(len(out))
        return out


def _small_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range 最多 {MAX_RANGE} 项")
    return r


@pass_eval_context
def _concat(eval_ctx: EvalContext, *items: Any) -> str:
    """`a ~ b`, refusing a result over the size limit before building it."""
    _need(weight(items))
    return _result((markup_join if eval_ctx.autoescape else str_join)(items))


class _Guard(NodeTransformer):
    """Route loops and `~` through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("dj_loop", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("dj_concat", list(node.nodes), node.lineno)


def _env_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None)
    call.set_lineno(lineno)
    return call


def _loop_depth(node: nodes.Node, depth: int = 0) -> Iterator[int]:
    for child in node.iter_child_nodes():
        d = depth + 1 if isinstance(child, nodes.For) else depth
        yield d
        yield from _loop_depth(child, d)


PLAIN = Sandbox(autoescape=False)
HTML = Sandbox(autoescape=True)
MAX_LOOP_DEPTH = 2


def parse(env: Sandbox, source: str) -> nodes.Template:
    """Parse, refuse deep loop nesting, and rewrite loops and `~` to charge the budget."""
    tree = env.parse(source)
    if max(_loop_depth(tree), default=0) > MAX_LOOP_DEPTH:
        raise SecurityError(f"循环最多嵌套 {MAX_LOOP_DEPTH} 层")
    tree = _Guard().visit(tree)
    tree.set_environment(env)
    return tree


@functools.lru_cache(maxsize=64)
def compile_pair(source: str) -> tuple[Template, Template]:
    """The plain and the HTML-escaping templates of an override (cached by source)."""
    plain = PLAIN.from_string(parse(PLAIN, source))
    if "html" not in plain.blocks:
        return plain, plain  # the HTML variant is composed from the plain blocks
    return plain, HTML.from_string(parse(HTML, source))


# -- errors, in Chinese, with the template line ---------------------------------------------

_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (ZeroDivisionError, "除数为零"),
    (OverflowError, "数值超出范围"),
    (IndexError, "下标超出范围"),
    (KeyError, "没有这个键"),
    (RecursionError, "嵌套过深"),
    (MemoryError, "内存不足"),
    (TypeError, "类型不符"),
    (ValueError, "取值有误"),
)


def template_line(exc: BaseException) -> int | None:
    """The template line an exception came from (the innermost template frame)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        tpl = tb.tb_frame.f_globals.get("__jinja_template__")
        if isinstance(tpl, Template):
            line = tpl.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def describe(exc: BaseException) -> tuple[str, int | None]:
    """A Chinese message for any exception of a sandboxed render, and its template line."""
    line = template_line(exc)
    where = f"第 {line} 行：" if line else ""
    if isinstance(exc, SecurityError):
        return f"模板不安全：{where}{exc}", line
    if isinstance(exc, UndefinedError):
        return f"模板有误：{where}{exc.message or exc}", line
    if isinstance(exc, TemplateSyntaxError):
        return f"模板有误：{where}{exc.message or exc}", line
    what = next((w for t, w in _WORDS if isinstance(exc, t)), type(exc).__name__)
    detail = str(exc)[:200]
    return f"模板有误：{where}{what}" + (f"（{detail}）" if detail else ""), line


def iter_limited(pieces: Iterable[str]) -> Iterator[str]:
    """Check the time between the pieces a block yields."""
    b = _budget()
    for piece in pieces:
        b.check_time()
        yield piece
