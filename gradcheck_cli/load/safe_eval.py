"""The TARGET call form (`'model.py:Net(3, depth=4)'`) read as data, never run as Python.

A config file or a command line may hold `Net(GPTConfig(n_layer=4), act=nn.GELU)`: this module
evaluates exactly that much of Python and refuses the rest, naming the offending part:

- names from the model file (looked up on the module, so a module-level `__getattr__` works);
  never builtins, never a name starting with `__`;
- attribute access `a.b`, except attributes starting with `_` (dunders and private names);
- literals: numbers, strings, bytes, lists, tuples, sets, dicts, None/True/False, and a unary
  minus or plus on a number;
- calls with positional and keyword arguments, `*[...]` and `**{...}` expanded into the call.
  Whether a callable may be called at all is the caller's `Policy` (see target.trust).

No operators beyond the unary sign, no subscripts, comprehensions, lambdas, f-strings,
conditionals or walrus: a config holds values, and anything computed belongs in the model file.

Torch-free: the policy that knows nn.Module is handed in by the torch tier.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradcheck_cli.records.errors import TargetError

ALLOWED = (
    "names from the model file, attribute access, literals (numbers, strings, lists, tuples, dicts, "
    "None/True/False, -1) and calls, with *[...] and **{...}"
)
_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))
_REFUSED_NAMES = {
    ast.Lambda: "a lambda",
    ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "an assignment expression",
    ast.Subscript: "a subscript",
    ast.BinOp: "an operator",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "a starred expression outside a call",
    ast.Slice: "a slice",
}


class UnsafeExpression(TargetError):
    """A call form holds something that is not data, or calls something it may not."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How names resolve and what may be called or passed; supplied by the torch tier."""

    lookup: Callable[[str], Any]
    """The model file's name -> value; raises KeyError when the file has no such name."""
    refuse_call: Callable[[Any], str | None]
    """Why this callable may not be called (None: it may)."""
    refuse_value: Callable[[Any], str | None]
    """Why this value may not be handed to a constructor (None: it may)."""
    call_hint: str = ALLOWED
    """The hint when a call is refused: what may be called."""
    refuse_arguments: Callable[[Any, dict[str, Any]], str | None] = lambda func, kwargs: None
    """Why this call with these keyword arguments may not be made (None: it may)."""


@dataclass(frozen=True, slots=True)
class CallParts:
    """The outer call of a call form, its arguments evaluated (inner calls already made)."""

    func: Any
    name: str
    args: list[Any]
    kwargs: dict[str, Any]


def parse_call(text: str) -> ast.Call:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise TargetError(
            f"cannot read the call {text!r}: {getattr(exc, 'msg', exc)}", "e.g. 'model.py:Net(10, depth=4)'"
        ) from None
    except (RecursionError, MemoryError):
        raise UnsafeExpression(f"the call {text[:60]!r}... is nested too deeply", ALLOWED) from None
    if not isinstance(tree.body, ast.Call):
        raise TargetError(f"{text!r} is not a call", "e.g. 'model.py:Net(10, depth=4)'")
    return tree.body


def evaluate_call(text: str, policy: Policy) -> CallParts:
    """The callable and evaluated arguments of `text`'s outer call; the caller makes that call."""
    call = parse_call(text)
    evaluator = _Evaluator(text, policy)
    try:
        func = evaluator.callable(call.func)  # refused before any argument is evaluated
        args, kwargs = evaluator.arguments(call)
    except RecursionError:
        raise UnsafeExpression(f"the call {text[:60]!r}... is nested too deeply", ALLOWED) from None
    return CallParts(func=func, name=ast.unparse(call.func), args=args, kwargs=kwargs)


class _Evaluator:
    def __init__(self, text: str, policy: Policy) -> None:
        self.text, self.policy = text, policy

    def refuse(self, node: ast.AST, what: str, hint: str = ALLOWED) -> UnsafeExpression:
        part = ast.unparse(node)
        return UnsafeExpression(f"{what} is not allowed in the call {self.text.strip()!r}: `{part}`", hint)

    def value(self, node: ast.expr) -> Any:
        """A value that may be passed on (a module or a standard-library function may not)."""
        return self._passable(node, self.evaluate(node))

    def evaluate(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, _CONSTANTS):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._signed(node)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.value(item) for item in node.elts]
            kind = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
            return kind(items)
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        what = _REFUSED_NAMES.get(type(node), f"a {type(node).__name__} expression")
        raise self.refuse(node, what)

    def _signed(self, node: ast.UnaryOp) -> Any:
        operand = node.operand
        if not (isinstance(operand, ast.Constant) and type(operand.value) in (int, float, complex)):
            raise self.refuse(node, "a sign on something other than a number")
        number: complex = operand.value  # type: ignore[assignment]  # checked just above
        return -number if isinstance(node.op, ast.USub) else number

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        out = {}
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self.refuse(item, "`**` inside a dict literal", "write the keys out")
            out[self.value(key)] = self.value(item)
        return out

    def _name(self, node: ast.Name) -> Any:
        if node.id.startswith("__"):
            raise self.refuse(node, f"the name {node.id!r}")
        try:
            return self.policy.lookup(node.id)
        except KeyError:
            raise UnsafeExpression(
                f"{node.id!r} in the call {self.text.strip()!r} is not defined in the model file",
                "names come from the model file (what it defines or imports); builtins are not available",
            ) from None

    def _attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise self.refuse(node, f"the attribute {node.attr!r} (a name starting with '_')")
        owner = self.evaluate(node.value)
        try:
            return getattr(owner, node.attr)
        except AttributeError:
            raise UnsafeExpression(
                f"{ast.unparse(node.value)} has no attribute {node.attr!r} (in the call {self.text.strip()!r})"
            ) from None

    def callable(self, node: ast.expr) -> Any:
        """What `node(...)` would call, once the policy allows calling it."""
        func = self.evaluate(node)
        reason = self.policy.refuse_call(func)
        if reason is not None:
            raise self.refuse(node, f"calling {ast.unparse(node)} ({reason})", self.policy.call_hint)
        return func

    def _call(self, node: ast.Call) -> Any:
        func = self.callable(node.func)
        args, kwargs = self.arguments(node)
        reason = self.policy.refuse_arguments(func, kwargs)
        if reason is not None:
            raise self.refuse(node, f"calling {ast.unparse(node.func)} with {reason}", self.policy.call_hint)
        return func(*args, **kwargs)

    def arguments(self, node: ast.Call) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments, `*[...]` and `**{...}` expanded."""
        args: list[Any] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                args.extend(self._starred(arg))
            else:
                args.append(self.value(arg))
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            items = self._double_starred(keyword.value) if keyword.arg is None else {keyword.arg: None}
            for key in items:
                if key in kwargs:
                    raise self.refuse(keyword.value, f"the keyword {key!r} given twice")
            kwargs.update(items if keyword.arg is None else {keyword.arg: self.value(keyword.value)})
        return args, kwargs

    def _starred(self, node: ast.Starred) -> list[Any]:
        items = self.evaluate(node.value)
        if not isinstance(items, (list, tuple)):
            raise self.refuse(node, "`*` of something other than a list or tuple")
        return [self._passable(node, item) for item in items]

    def _double_starred(self, node: ast.expr) -> dict[str, Any]:
        items = self.evaluate(node)
        if not isinstance(items, dict) or not all(isinstance(k, str) for k in items):
            raise self.refuse(node, "`**` of something other than a dict with string keys")
        return {key: self._passable(node, item) for key, item in items.items()}

    def _passable(self, node: ast.expr, item: Any) -> Any:
        reason = self.policy.refuse_value(item)
        if reason is not None:
            raise self.refuse(node, reason, self.policy.call_hint)
        return item
