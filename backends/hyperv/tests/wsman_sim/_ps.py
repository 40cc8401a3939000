"""A small PowerShell interpreter: exactly the subset the virtabs Hyper-V backend emits (test infrastructure).

Parsed for real (a typo is a parse error or an unknown command/parameter, as in PowerShell),
evaluated against Python values:

* statements separated by newlines or ``;``: assignment ``$x = pipeline``, pipelines, ``if``/``elseif``/``else``,
  ``foreach ($x in ...) {}``, ``throw``, ``try {} catch {}`` (``$_`` the ErrorRecord: ``FullyQualifiedErrorId``,
  ``CategoryInfo.Category``, ``Exception.Message``, ``Exception.GetType().FullName``, ``TargetObject``), ``exit N``;
* pipelines ``expr | Cmdlet -Param value -Switch -Param:$false positional | ...``;
* expressions: ``$var`` with ``.Member``, ``.Method(args)`` and ``[index]``, single-quoted strings, numbers,
  ``$true``/``$false``/``$null``, ``@( )``, ``@{ k = v; ... }``, ``( pipeline )``, ``{ scriptblock }``,
  ``[Type]::Member``, casts ``[string]``/``[int]``/``[int64]``/``[bool]``, ``-eq -ne -gt -ge -lt -le -like``,
  ``-and -or -not !``.

Commands are looked up case-insensitively in a :class:`CommandTable`; parameters bind by unique
case-insensitive prefix, as PowerShell binds them. Errors are :class:`PSError` records rendered as CLIXML
by the server.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CommandTable",
    "Interpreter",
    "PSEnum",
    "PSError",
    "PSObject",
    "Param",
    "ParseError",
    "ScriptBlock",
    "TimeSpan",
    "to_bool",
]


class ParseError(Exception):
    """A syntax error (PowerShell's ParserError)."""

    def __init__(self, message: str, pos: int, error_id: str = "ParseError") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.error_id = error_id


@dataclass
class PSError(Exception):
    """An error record: what PowerShell prints as ``<cmd> : <message>`` plus CategoryInfo and the error id."""

    message: str
    category: str = "NotSpecified"
    error_id: str = "RuntimeException"
    target: str = ""
    target_type: str = ""
    exception: str = "System.Management.Automation.RuntimeException"
    command: str = ""
    terminating: bool = True
    pos: int = -1

    def __str__(self) -> str:
        return self.message


class Stopped(Exception):
    """The command was signalled to terminate (WS-Man Signal) while it ran."""


# --- values ---------------------------------------------------------------------------------------


class PSEnum:
    """An enum value: compares equal to its name (case-insensitive) and its number; JSON emits the number."""

    def __init__(self, type_name: str, name: str, value: int) -> None:
        self.type_name = type_name
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"[{self.type_name}]::{self.name}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PSEnum):
            return other.value == self.value
        if isinstance(other, str):
            return other.lower() == self.name.lower()
        if isinstance(other, int) and not isinstance(other, bool):
            return other == self.value
        return False

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass
class TimeSpan:
    """System.TimeSpan (only what scripts read)."""

    seconds: float

    def ps_props(self) -> dict[str, Any]:
        ticks = int(self.seconds * 10_000_000)
        return {
            "Ticks": ticks,
            "Days": int(self.seconds // 86400),
            "Hours": int(self.seconds // 3600) % 24,
            "Minutes": int(self.seconds // 60) % 60,
            "Seconds": int(self.seconds) % 60,
            "TotalSeconds": self.seconds,
            "TotalMilliseconds": self.seconds * 1000,
        }


class PSObject:
    """A PSCustomObject (ConvertFrom-Json output) or a host object exposing properties by name."""

    type_name = "System.Management.Automation.PSCustomObject"

    def __init__(self, props: dict[str, Any] | None = None) -> None:
        self._props = dict(props or {})

    def ps_props(self) -> dict[str, Any]:
        """Property name -> value (case is kept; lookups are case-insensitive)."""
        return self._props


@dataclass
class ScriptBlock:
    """``{ ... }``: statements evaluated later (ForEach-Object, Where-Object)."""

    body: list[Any]
    text: str


def get_member(obj: Any, name: str) -> Any:
    """``$obj.Name``: case-insensitive; ``$null`` for a missing member (non-strict mode)."""
    if obj is None:
        return None
    if isinstance(obj, list) and name.lower() in ("count", "length"):
        return len(obj)
    if isinstance(obj, list):
        # Member enumeration (PowerShell 3+): the member of every element.
        out = [get_member(o, name) for o in obj]
        return [o for o in out if o is not None]
    props: dict[str, Any] | None = None
    if isinstance(obj, dict):
        props = obj
    elif hasattr(obj, "ps_props"):
        props = obj.ps_props()
    elif isinstance(obj, uuid.UUID):
        props = {"Guid": str(obj)}
    elif isinstance(obj, str):
        props = {"Length": len(obj)}
    if props is None:
        return None
    low = name.lower()
    for k, v in props.items():
        if k.lower() == low:
            return v
    if isinstance(obj, list | tuple) and low in ("count", "length"):
        return len(obj)
    return None


def to_bool(v: Any) -> bool:
    """PowerShell truthiness."""
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str):
        return v != ""
    if isinstance(v, list):
        if len(v) == 0:
            return False
        if len(v) == 1:
            return to_bool(v[0])
        return True
    return True


def type_name(v: Any) -> str:
    """The .NET type name PowerShell would show for ``v``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "System.Boolean"
    if isinstance(v, int):
        return "System.Int32" if -(2**31) <= v < 2**31 else "System.Int64"
    if isinstance(v, float):
        return "System.Double"
    if isinstance(v, str):
        return "System.String"
    if isinstance(v, list):
        return "System.Object[]"
    if isinstance(v, dict):
        return "System.Collections.Hashtable"
    if isinstance(v, bytes):
        return "System.Byte[]"
    if isinstance(v, PSEnum):
        return v.type_name
    return str(getattr(v, "type_name", type(v).__name__))


def to_string(v: Any) -> str:
    """``[string]$v``."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, list):
        return " ".join(to_string(x) for x in v)
    if isinstance(v, _dt.datetime):
        return v.strftime("%m/%d/%Y %H:%M:%S")
    return str(v)


def _compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, list):
        raise PSError("array comparison is outside the simulated PowerShell subset", error_id="NotImplemented")
    if op in ("ceq", "cne"):
        same = to_string(left) == to_string(right) if isinstance(left, str) else left == right
        return same if op == "ceq" else not same
    if op == "like":
        return fnmatch.fnmatchcase(to_string(left).lower(), to_string(right).lower())
    if isinstance(left, PSEnum) or isinstance(right, PSEnum):
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
    if isinstance(left, str) and not isinstance(right, PSEnum):
        a: Any = left.lower()
        b: Any = to_string(right).lower()
    elif isinstance(left, uuid.UUID):
        a, b = str(left).lower(), to_string(right).lower()
    elif isinstance(left, int | float) and not isinstance(left, bool) and isinstance(right, str):
        try:
            a, b = left, float(right)
        except ValueError:
            a, b = str(left), right
    else:
        a, b = left, right
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op])
    except TypeError:
        return False


# --- the AST --------------------------------------------------------------------------------------


@dataclass
class Node:
    """Base of every AST node; ``pos`` is the offset in the script (for error positions)."""

    pos: int


@dataclass
class Lit(Node):
    value: Any


@dataclass
class Var(Node):
    name: str


@dataclass
class Member(Node):
    obj: Node
    name: str
    args: list[Node] | None = None  # a method call when not None
    static: bool = False


@dataclass
class Index(Node):
    obj: Node
    index: Node


@dataclass
class ArrayExpr(Node):
    body: list[Any]


@dataclass
class HashExpr(Node):
    items: list[tuple[str, Any]]


@dataclass
class SubExpr(Node):
    pipeline: Any


@dataclass
class Block(Node):
    block: ScriptBlock


@dataclass
class TypeLit(Node):
    name: str


@dataclass
class Cast(Node):
    type_name: str
    value: Node


@dataclass
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass
class Not(Node):
    value: Node


@dataclass
class Arg:
    """One command argument: ``-Name``, ``-Name:value`` or a positional value."""

    name: str | None
    value: Node | None
    pos: int
    colon: bool = False


@dataclass
class Command(Node):
    name: str
    args: list[Arg]
    text: str


@dataclass
class Pipeline(Node):
    elements: list[Any]  # first: Node (expression) or Command; then Commands


@dataclass
class Assign(Node):
    target: str
    value: Any


@dataclass
class If(Node):
    branches: list[tuple[Any, list[Any]]]
    orelse: list[Any] | None


@dataclass
class ForEach(Node):
    var: str
    source: Any
    body: list[Any]


@dataclass
class While(Node):
    cond: Any
    body: list[Any]


@dataclass
class Throw(Node):
    value: Any


@dataclass
class Try(Node):
    body: list[Any]
    handler: list[Any]


@dataclass
class Exit(Node):
    value: Any


class ScriptExit(Exception):
    """``exit N``: the script ends with exit code N."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _ExceptionValue:
    """``$_.Exception`` of a caught error: ``Message`` and ``GetType()`` (``FullName``, ``Name``)."""

    def __init__(self, full_name: str, message: str) -> None:
        self.full_name = full_name
        self.message = message

    def ps_props(self) -> dict[str, Any]:
        """Its properties."""
        return {"Message": self.message}


_EXCEPTION_NAMESPACES = {
    "ParameterBindingException": "System.Management.Automation",
    "CommandNotFoundException": "System.Management.Automation",
    "RuntimeException": "System.Management.Automation",
    "ParseException": "System.Management.Automation",
    "WriteErrorException": "Microsoft.PowerShell.Commands",
    "VirtualizationException": "Microsoft.HyperV.PowerShell",
    "ItemNotFoundException": "System.Management.Automation",
}


_ERROR_CATEGORIES = [
    "NotSpecified",
    "OpenError",
    "CloseError",
    "DeviceError",
    "DeadlockDetected",
    "InvalidArgument",
    "InvalidData",
    "InvalidOperation",
    "InvalidResult",
    "InvalidType",
    "MetadataError",
    "NotImplemented",
    "NotInstalled",
    "ObjectNotFound",
    "OperationStopped",
    "OperationTimeout",
    "SyntaxError",
    "ParserError",
    "PermissionDenied",
    "ResourceBusy",
    "ResourceExists",
    "ResourceUnavailable",
    "ReadError",
    "WriteError",
    "FromStdErr",
    "SecurityError",
    "ProtocolError",
    "ConnectionError",
    "AuthenticationError",
    "LimitsExceeded",
    "QuotaExceeded",
    "NotEnabled",
]
"""``System.Management.Automation.ErrorCategory`` in value order."""


def error_record(err: PSError) -> PSObject:
    """The ErrorRecord a ``catch`` block sees as ``$_`` for ``err``."""
    short = err.exception.rsplit(".", 1)[-1]
    full = err.exception if "." in err.exception else f"{_EXCEPTION_NAMESPACES.get(short, 'System')}.{short}"
    return PSObject(
        {
            "FullyQualifiedErrorId": err.error_id,
            "CategoryInfo": PSObject(
                {
                    "Category": PSEnum(
                        "System.Management.Automation.ErrorCategory",
                        err.category,
                        _ERROR_CATEGORIES.index(err.category) if err.category in _ERROR_CATEGORIES else 0,
                    ),
                    "Reason": short,
                    "TargetName": err.target,
                    "Activity": err.command,
                }
            ),
            "Exception": _ExceptionValue(full, err.message),
            "TargetObject": err.target or None,
        }
    )


# --- the parser -----------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[A-Za-z0-9_\-\\.:]")
_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*|_)")
_NUM_RE = re.compile(r"-?\d+(\.\d+)?")
_CMP_OPS = ("eq", "ne", "ceq", "cne", "gt", "ge", "lt", "le", "like")
_OPS = (*_CMP_OPS, "and", "or", "not")
_KEYWORDS = {"if", "elseif", "else", "foreach", "while", "throw", "in", "try", "catch", "exit"}


class Parser:
    """Recursive descent over the script text (PowerShell's expression and argument modes)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    # helpers
    def error(self, msg: str, error_id: str = "ParseError") -> ParseError:
        return ParseError(msg, self.i, error_id)

    def peek(self, n: int = 0) -> str:
        j = self.i + n
        return self.s[j] if j < len(self.s) else ""

    def skip_ws(self, newlines: bool = False) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "`" and self.peek(1) == "\n":  # line continuation
                self.i += 2
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def expect(self, ch: str) -> None:
        self.skip_ws(newlines=ch in "})")
        if not self.s.startswith(ch, self.i):
            names = {"}": "MissingEndCurlyBrace", ")": "MissingEndParenthesisInExpression"}
            raise self.error(
                f"Missing closing '{ch}'" if ch in names else f"Missing '{ch}'", names.get(ch, "ParseError")
            )
        self.i += len(ch)

    def word_at(self) -> str:
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*").match(self.s, self.i)
        return m.group(0) if m else ""

    # statements
    def parse_script(self, end: str = "") -> list[Any]:
        stmts: list[Any] = []
        while True:
            self.skip_ws(newlines=True)
            while self.peek() == ";":
                self.i += 1
                self.skip_ws(newlines=True)
            if self.i >= len(self.s) or (end and self.peek() == end):
                return stmts
            stmts.append(self.parse_statement())
            self.skip_ws()
            c = self.peek()
            if c in (";", "\n"):
                self.i += 1
            elif c == "" or (end and c == end):
                continue
            else:
                raise self.error(
                    f"Unexpected token '{self.s[self.i : self.i + 12]}' in expression or statement.", "UnexpectedToken"
                )

    def parse_block(self) -> list[Any]:
        self.skip_ws(newlines=True)
        if self.peek() != "{":
            raise self.error("Missing statement block.", "MissingOpenBraceInStatement")
        self.i += 1
        body = self.parse_script(end="}")
        self.expect("}")
        return body

    def parse_statement(self) -> Any:
        pos = self.i
        w = self.word_at().lower()
        if w == "if":
            self.i += 2
            branches = []
            self.expect("(")
            cond = self.parse_pipeline()
            self.expect(")")
            branches.append((cond, self.parse_block()))
            orelse = None
            while True:
                save = self.i
                self.skip_ws(newlines=True)
                w2 = self.word_at().lower()
                if w2 == "elseif":
                    self.i += 6
                    self.expect("(")
                    c2 = self.parse_pipeline()
                    self.expect(")")
                    branches.append((c2, self.parse_block()))
                elif w2 == "else":
                    self.i += 4
                    orelse = self.parse_block()
                    break
                else:
                    self.i = save
                    break
            return If(pos, branches, orelse)
        if w == "foreach" and self.s[self.i + 7 : self.i + 8] in (" ", "("):
            self.i += 7
            self.expect("(")
            self.skip_ws()
            m = _VAR_RE.match(self.s, self.i)
            if not m:
                raise self.error("Missing variable name after foreach.", "MissingVariableNameAfterForeach")
            self.i = m.end()
            self.skip_ws()
            if self.word_at().lower() != "in":
                raise self.error("Missing 'in' after variable in foreach loop.", "MissingInInForeach")
            self.i += 2
            src = self.parse_pipeline()
            self.expect(")")
            return ForEach(pos, m.group(1), src, self.parse_block())
        if w == "while" and self.s[self.i + 5 : self.i + 6] in (" ", "("):
            self.i += 5
            self.expect("(")
            cond = self.parse_pipeline()
            self.expect(")")
            return While(pos, cond, self.parse_block())
        if w == "try" and self.s[self.i + 3 : self.i + 4] in (" ", "{", "\n"):
            self.i += 3
            body = self.parse_block()
            self.skip_ws(newlines=True)
            if self.word_at().lower() != "catch":
                raise self.error("The Try statement is missing its Catch or Finally block.", "MissingCatchOrFinally")
            self.i += 5
            return Try(pos, body, self.parse_block())
        if w == "exit" and self.s[self.i + 4 : self.i + 5] in (" ", ";", "\n", "}", ""):
            self.i += 4
            self.skip_ws()
            value = None if self.peek() in (";", "\n", "}", "") else self.parse_pipeline()
            return Exit(pos, value)
        if w == "throw":
            self.i += 5
            self.skip_ws()
            value = None if self.peek() in (";", "\n", "}", "") else self.parse_pipeline()
            return Throw(pos, value)
        m = _VAR_RE.match(self.s, self.i)
        if m:
            j = m.end()
            while j < len(self.s) and self.s[j] in " \t":
                j += 1
            if j < len(self.s) and self.s[j] == "=" and self.s[j + 1 : j + 2] != "=":
                self.i = j + 1
                return Assign(pos, m.group(1), self.parse_pipeline())
        return self.parse_pipeline()

    def parse_pipeline(self) -> Pipeline:
        self.skip_ws()
        pos = self.i
        elements: list[Any] = [self.parse_command_or_expr()]
        while True:
            self.skip_ws()
            if self.peek() == "|":
                self.i += 1
                self.skip_ws(newlines=True)
                if not self._at_command():
                    raise self.error(
                        "Expressions are only allowed as the first element of a pipeline.",
                        "ExpressionsMustBeFirstInPipeline",
                    )
                elements.append(self.parse_command())
            else:
                break
        return Pipeline(pos, elements)

    def _at_command(self) -> bool:
        c = self.peek()
        if not (c.isalpha() or c == "_"):
            return False
        w = self.word_at().lower()
        return w not in _KEYWORDS

    def parse_command_or_expr(self) -> Any:
        if self._at_command():
            return self.parse_command()
        return self.parse_expr()

    def parse_command(self) -> Command:
        pos = self.i
        start = self.i
        while self.i < len(self.s) and _NAME_CHARS.match(self.s[self.i]):
            self.i += 1
        name = self.s[start : self.i]
        args: list[Arg] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c in ("", "\n", ";", "|", ")", "}"):
                break
            apos = self.i
            if c == "-" and (self.peek(1).isalpha()):
                j = self.i + 1
                while j < len(self.s) and (self.s[j].isalnum() or self.s[j] == "_"):
                    j += 1
                pname = self.s[self.i + 1 : j]
                self.i = j
                if self.peek() == ":":
                    self.i += 1
                    args.append(Arg(pname, self.parse_arg_value(), apos, colon=True))
                else:
                    args.append(Arg(pname, None, apos))
            else:
                args.append(Arg(None, self.parse_arg_value(), apos))
        return Command(pos, name, args, self.s[pos : self.i].strip())

    def parse_arg_value(self) -> Node:
        self.skip_ws()
        c = self.peek()
        pos = self.i
        if c in "$'@({[" or (c.isdigit()) or (c == "-" and self.peek(1).isdigit()):
            return self.parse_postfix()
        # bareword: a string argument (e.g. -ControllerType SCSI)
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in " \t\r\n;|)}":
            self.i += 1
        if start == self.i:
            raise self.error("Missing an argument for parameter.", "MissingArgument")
        return Lit(pos, self.s[start : self.i])

    # expressions
    def parse_expr(self) -> Node:
        left = self.parse_comparison()
        while True:
            self.skip_ws()
            op = self._op_at(("and", "or"))
            if not op:
                return left
            pos = self.i
            self.i += len(op) + 1
            self.skip_ws(newlines=True)
            left = BinOp(pos, op, left, self.parse_comparison())

    def _op_at(self, ops: Iterable[str]) -> str:
        if self.peek() != "-":
            return ""
        m = re.compile(r"-([A-Za-z]+)\b").match(self.s, self.i)
        if m and m.group(1).lower() in ops:
            return m.group(1).lower()
        return ""

    def parse_comparison(self) -> Node:
        left = self.parse_unary()
        self.skip_ws()
        op = self._op_at(_CMP_OPS)
        if op:
            pos = self.i
            self.i += len(op) + 1
            self.skip_ws()
            return BinOp(pos, op, left, self.parse_unary())
        m = re.compile(r"-([A-Za-z]+)\b").match(self.s, self.i)
        if m and m.group(1).lower() not in _OPS:
            raise self.error(f"Unexpected token '-{m.group(1)}' in expression or statement.", "UnexpectedToken")
        return left

    def parse_unary(self) -> Node:
        self.skip_ws()
        pos = self.i
        if self._op_at(("not",)):
            self.i += 4
            return Not(pos, self.parse_unary())
        if self.peek() == "!":
            self.i += 1
            return Not(pos, self.parse_unary())
        return self.parse_postfix()

    def parse_postfix(self) -> Node:
        node = self.parse_primary()
        while True:
            c = self.peek()
            if c == "." and (self.peek(1).isalpha() or self.peek(1) == "_"):
                self.i += 1
                node = self._member(node, static=False)
            elif c == ":" and self.peek(1) == ":" and isinstance(node, TypeLit):
                self.i += 2
                node = self._member(node, static=True)
            elif c == "[" and not isinstance(node, TypeLit):
                pos = self.i
                self.i += 1
                idx = self.parse_expr()
                self.expect("]")
                node = Index(pos, node, idx)
            else:
                return node

    def _member(self, obj: Node, static: bool) -> Node:
        pos = self.i
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.s, self.i)
        if not m:
            raise self.error("Missing property name after reference operator.", "MissingPropertyName")
        self.i = m.end()
        args = None
        if self.peek() == "(":
            self.i += 1
            args = []
            self.skip_ws()
            if self.peek() != ")":
                while True:
                    args.append(self.parse_expr())
                    self.skip_ws()
                    if self.peek() == ",":
                        self.i += 1
                        continue
                    break
            self.expect(")")
        return Member(pos, obj, m.group(0), args, static)

    def parse_primary(self) -> Node:
        self.skip_ws()
        pos = self.i
        c = self.peek()
        if c == "$":
            m = _VAR_RE.match(self.s, self.i)
            if not m:
                raise self.error("Variable reference is not valid.", "InvalidVariableReference")
            self.i = m.end()
            name = m.group(1)
            low = name.lower()
            if low == "true":
                return Lit(pos, True)
            if low == "false":
                return Lit(pos, False)
            if low == "null":
                return Lit(pos, None)
            return Var(pos, name)
        if c == "'":
            self.i += 1
            out = []
            while True:
                if self.i >= len(self.s):
                    raise self.error("The string is missing the terminator: '.", "TerminatorExpectedAtEndOfString")
                ch = self.s[self.i]
                if ch == "'":
                    if self.peek(1) == "'":
                        out.append("'")
                        self.i += 2
                        continue
                    self.i += 1
                    break
                out.append(ch)
                self.i += 1
            return Lit(pos, "".join(out))
        if c == '"':
            raise self.error("double-quoted strings are outside the simulated subset", "NotImplemented")
        if c == "@" and self.peek(1) == "(":
            self.i += 2
            body = self.parse_script(end=")")
            self.expect(")")
            return ArrayExpr(pos, body)
        if c == "@" and self.peek(1) == "{":
            self.i += 2
            items: list[tuple[str, Any]] = []
            while True:
                self.skip_ws(newlines=True)
                while self.peek() == ";":
                    self.i += 1
                    self.skip_ws(newlines=True)
                if self.peek() == "}":
                    self.i += 1
                    return HashExpr(pos, items)
                if self.peek() == "'":
                    key_node = self.parse_primary()
                    assert isinstance(key_node, Lit)
                    key = str(key_node.value)
                else:
                    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(self.s, self.i)
                    if not m:
                        raise self.error("Missing key before '=' in hash literal.", "MissingEqualsInHashLiteral")
                    key = m.group(0)
                    self.i = m.end()
                self.skip_ws()
                if self.peek() != "=":
                    raise self.error("Missing '=' operator after key in hash literal.", "MissingEqualsInHashLiteral")
                self.i += 1
                self.skip_ws()
                items.append((key, self.parse_statement()))
                self.skip_ws()
                if self.peek() not in (";", "\n", "}"):
                    raise self.error("Missing statement after '=' in hash literal.", "MissingStatementInHashLiteral")
        if c == "(":
            self.i += 1
            self.skip_ws(newlines=True)
            pipe = self.parse_pipeline()
            self.expect(")")
            return SubExpr(pos, pipe)
        if c == "{":
            self.i += 1
            start = self.i
            body = self.parse_script(end="}")
            text = self.s[start : self.i]
            self.expect("}")
            return Block(pos, ScriptBlock(body, text))
        if c == "[":
            m = re.compile(r"\[([A-Za-z][A-Za-z0-9_.]*)\]").match(self.s, self.i)
            if not m:
                raise self.error("Missing type name after '['.", "MissingTypename")
            self.i = m.end()
            if self.peek() == ":":
                return TypeLit(pos, m.group(1))
            return Cast(pos, m.group(1), self.parse_unary())
        m = _NUM_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
            return Lit(pos, float(m.group(0)) if m.group(1) else int(m.group(0)))
        raise self.error(
            f"Unexpected token '{self.s[self.i : self.i + 12]}' in expression or statement.", "UnexpectedToken"
        )


# --- commands -------------------------------------------------------------------------------------


@dataclass
class Param:
    """A cmdlet parameter: ``switch`` takes no value; ``position`` binds a positional argument;
    ``pipeline`` takes pipeline input."""

    name: str
    switch: bool = False
    position: int | None = None
    pipeline: bool = False
    mandatory: bool = False


CmdFunc = Callable[["Invocation"], Iterable[Any]]

COMMON_PARAMS = (
    Param("ErrorAction"),
    Param("WarningAction"),
    Param("Verbose", switch=True),
    Param("Debug", switch=True),
    Param("Confirm", switch=True),
    Param("WhatIf", switch=True),
    Param("OutVariable"),
    Param("ErrorVariable"),
)


@dataclass
class CmdDef:
    """A registered cmdlet: its names (qualified and not), parameters and implementation."""

    name: str
    module: str
    params: list[Param]
    func: CmdFunc
    common: bool = True
    noun_type: str = ""

    def all_params(self) -> list[Param]:
        return self.params + (list(COMMON_PARAMS) if self.common else [])


@dataclass
class Invocation:
    """One call of a cmdlet: bound parameters and (for pipeline cmdlets) the current input object."""

    interp: Interpreter
    cmd: CmdDef
    bound: dict[str, Any]
    input: Any = None
    has_input: bool = False
    pos: int = -1

    def get(self, name: str, default: Any = None) -> Any:
        return self.bound.get(name.lower(), default)

    def has(self, name: str) -> bool:
        return name.lower() in self.bound

    def switch(self, name: str) -> bool:
        return to_bool(self.bound.get(name.lower(), False))

    def error(self, message: str, **kw: Any) -> PSError:
        kw.setdefault("command", self.cmd.name)
        return PSError(message, **kw)


class CommandTable:
    """Cmdlets by name (``Get-VM`` and ``Hyper-V\\Get-VM``), case-insensitive."""

    def __init__(self) -> None:
        self._cmds: dict[str, CmdDef] = {}

    def add(self, name: str, module: str, params: list[Param], func: CmdFunc, *, common: bool = True) -> None:
        d = CmdDef(name, module, params, func, common)
        self._cmds[name.lower()] = d
        self._cmds[f"{module}\\{name}".lower()] = d

    def get(self, name: str) -> CmdDef | None:
        return self._cmds.get(name.lower())


class _Exit(Exception):
    pass


@dataclass
class Interpreter:
    """Runs one script; writes output objects to ``output`` and error records to ``errors``."""

    commands: CommandTable
    cancel: threading.Event = field(default_factory=threading.Event)
    variables: dict[str, Any] = field(default_factory=dict)
    output: list[Any] = field(default_factory=list)
    errors: list[PSError] = field(default_factory=list)
    script: str = ""
    out_sink: Callable[[Any], None] | None = None

    def run(self, script: str) -> int:
        """Parse and run ``script``; the process exit code (0, or 1 after a terminating error)."""
        self.script = script
        self.variables.setdefault("erroractionpreference", "Continue")
        self.variables.setdefault("progresspreference", "Continue")
        try:
            stmts = Parser(script).parse_script()
        except ParseError as exc:
            self.errors.append(
                PSError(
                    exc.message,
                    category="ParserError",
                    error_id=exc.error_id,
                    exception="System.Management.Automation.ParseException",
                    pos=exc.pos,
                )
            )
            return 1
        try:
            for out in self.exec_block(stmts):
                self.emit(out)
        except PSError as exc:
            self.errors.append(exc)
            return 1
        except ScriptExit as exc:
            return exc.code
        except Stopped:
            return 1
        return 1 if self.errors else 0

    def emit(self, value: Any) -> None:
        if self.out_sink is not None:
            self.out_sink(value)
        else:
            self.output.append(value)

    # statements
    def exec_block(self, stmts: list[Any]) -> Iterator[Any]:
        for st in stmts:
            if self.cancel.is_set():
                raise Stopped()
            yield from self.exec_stmt(st)

    def exec_stmt(self, st: Any) -> Iterator[Any]:
        if isinstance(st, Assign):
            vals = list(self.run_pipeline(st.value))
            self.variables[st.target.lower()] = (
                _unwrap(vals)
                if not isinstance(st.value.elements[0], ArrayExpr) or len(st.value.elements) > 1
                else self.eval(st.value.elements[0])
            )
            return
        if isinstance(st, If):
            for cond, body in st.branches:
                if to_bool(_unwrap(list(self.run_pipeline(cond)))):
                    yield from self.exec_block(body)
                    return
            if st.orelse is not None:
                yield from self.exec_block(st.orelse)
            return
        if isinstance(st, ForEach):
            for item in _enumerate(_unwrap(list(self.run_pipeline(st.source)))):
                self.variables[st.var.lower()] = item
                yield from self.exec_block(st.body)
            return
        if isinstance(st, While):
            for _ in range(10000):
                if not to_bool(_unwrap(list(self.run_pipeline(st.cond)))):
                    return
                yield from self.exec_block(st.body)
            raise PSError("simulator: loop did not end after 10000 iterations", pos=st.pos)
        if isinstance(st, Try):
            try:
                yield from self.exec_block(st.body)  # what it output before the error stays output
            except PSError as exc:
                saved = self.variables.get("_")
                self.variables["_"] = error_record(exc)
                try:
                    yield from self.exec_block(st.handler)
                finally:
                    self.variables["_"] = saved
            return
        if isinstance(st, Exit):
            value = _unwrap(list(self.run_pipeline(st.value))) if st.value is not None else 0
            raise ScriptExit(int(value or 0))
        if isinstance(st, Throw):
            value = _unwrap(list(self.run_pipeline(st.value))) if st.value is not None else "ScriptHalted"
            msg = to_string(value)
            raise PSError(msg, category="OperationStopped", error_id=msg, target=msg, target_type="String", pos=st.pos)
        yield from self.run_pipeline(st)

    # pipelines
    def run_pipeline(self, p: Pipeline) -> Iterator[Any]:
        first = p.elements[0]
        stream: Iterable[Any] = self.invoke(first, None) if isinstance(first, Command) else _enumerate(self.eval(first))
        for cmd in p.elements[1:]:
            stream = self.invoke(cmd, stream)
        yield from stream

    def _bind(self, node: Command, cdef: CmdDef) -> tuple[dict[str, Any], list[Param]]:
        params = cdef.all_params()
        bound: dict[str, Any] = {}
        positional: list[Any] = []
        args = list(node.args)
        k = 0
        while k < len(args):
            a = args[k]
            k += 1
            if a.name is None:
                assert a.value is not None
                positional.append(self.eval(a.value))
                continue
            matches = [p for p in params if p.name.lower() == a.name.lower()]
            if not matches:
                matches = [p for p in params if p.name.lower().startswith(a.name.lower())]
            if not matches:
                raise PSError(
                    f"A parameter cannot be found that matches parameter name '{a.name}'.",
                    category="InvalidArgument",
                    error_id=f"NamedParameterNotFound,{_cmd_fqn(cdef)}",
                    target="",
                    target_type="",
                    exception="ParameterBindingException",
                    command=cdef.name,
                    pos=a.pos,
                )
            if len(matches) > 1:
                names = ", ".join(p.name for p in matches)
                raise PSError(
                    f"Parameter cannot be processed because the parameter name '{a.name}' is ambiguous. "
                    f"Possible matches include: {names}.",
                    category="InvalidArgument",
                    error_id=f"AmbiguousParameter,{_cmd_fqn(cdef)}",
                    exception="ParameterBindingException",
                    command=cdef.name,
                    pos=a.pos,
                )
            p = matches[0]
            if p.name.lower() in bound:
                raise PSError(
                    f"Cannot bind parameter because parameter '{p.name}' is specified more than once.",
                    category="InvalidArgument",
                    error_id=f"ParameterAlreadyBound,{_cmd_fqn(cdef)}",
                    exception="ParameterBindingException",
                    command=cdef.name,
                    pos=a.pos,
                )
            if a.colon:
                assert a.value is not None
                bound[p.name.lower()] = self.eval(a.value)
            elif p.switch:
                bound[p.name.lower()] = True
            else:
                if k >= len(args) or args[k].name is not None:
                    raise PSError(
                        f"Missing an argument for parameter '{p.name}'. Specify a parameter of type "
                        "'System.Object' and try again.",
                        category="InvalidArgument",
                        error_id=f"MissingArgument,{_cmd_fqn(cdef)}",
                        exception="ParameterBindingException",
                        command=cdef.name,
                        pos=a.pos,
                    )
                v = args[k].value
                assert v is not None
                bound[p.name.lower()] = self.eval(v)
                k += 1
        pos_params = sorted(
            (p for p in params if p.position is not None and p.name.lower() not in bound), key=lambda p: p.position or 0
        )
        for value in positional:
            if not pos_params:
                raise PSError(
                    f"A positional parameter cannot be found that accepts argument '{to_string(value)}'.",
                    category="InvalidArgument",
                    error_id=f"PositionalParameterNotFound,{_cmd_fqn(cdef)}",
                    exception="ParameterBindingException",
                    command=cdef.name,
                    pos=node.pos,
                )
            bound[pos_params.pop(0).name.lower()] = value
        return bound, params

    def invoke(self, node: Command, upstream: Iterable[Any] | None) -> Iterator[Any]:
        cdef = self.commands.get(node.name)
        if cdef is None:
            raise PSError(
                f"The term '{node.name}' is not recognized as the name of a cmdlet, function, script file, or "
                "operable program. Check the spelling of the name, or if a path was included, verify that the path "
                "is correct and try again.",
                category="ObjectNotFound",
                error_id="CommandNotFoundException",
                target=node.name,
                target_type="String",
                exception="CommandNotFoundException",
                command=node.name,
                pos=node.pos,
            )
        bound, params = self._bind(node, cdef)
        ea = str(bound.get("erroraction", self.variables.get("erroractionpreference", "Continue")))
        pipe_param = next((p for p in params if p.pipeline), None)

        def call(inv: Invocation) -> Iterator[Any]:
            for m in (p for p in params if p.mandatory):
                if m.name.lower() not in inv.bound and not (m.pipeline and inv.has_input):
                    raise PSError(
                        f"Cannot process command because of one or more missing mandatory parameters: {m.name}.",
                        category="InvalidArgument",
                        error_id=f"MissingMandatoryParameter,{_cmd_fqn(cdef)}",
                        exception="ParameterBindingException",
                        command=cdef.name,
                        pos=node.pos,
                    )
            try:
                yield from cdef.func(inv)
            except PSError as exc:
                exc.command = exc.command or cdef.name
                if exc.pos < 0:
                    exc.pos = node.pos
                if not exc.terminating and ea.lower() in ("silentlycontinue", "ignore"):
                    return
                if not exc.terminating and ea.lower() == "continue":
                    self.errors.append(exc)
                    return
                raise

        if upstream is None:
            yield from call(Invocation(self, cdef, bound, pos=node.pos))
            return
        if pipe_param is None:
            for item in upstream:
                raise PSError(
                    "The input object cannot be bound to any parameters for the command either because the "
                    "command does not take pipeline input or the input and its properties do not match any of the "
                    "parameters that take pipeline input.",
                    category="InvalidArgument",
                    error_id=f"InputObjectNotBound,{_cmd_fqn(cdef)}",
                    target=to_string(item),
                    exception="ParameterBindingException",
                    command=cdef.name,
                    pos=node.pos,
                )
            yield from call(Invocation(self, cdef, bound, pos=node.pos))
            return
        if getattr(cdef.func, "collects", False):
            items = list(upstream)
            b = dict(bound)
            yield from call(Invocation(self, cdef, b, input=items, has_input=True, pos=node.pos))
            return
        for item in upstream:
            b = dict(bound)
            b[pipe_param.name.lower()] = item
            yield from call(Invocation(self, cdef, b, input=item, has_input=True, pos=node.pos))

    def run_scriptblock(self, sb: ScriptBlock, dollar_underscore: Any) -> list[Any]:
        saved = self.variables.get("_")
        self.variables["_"] = dollar_underscore
        try:
            return list(self.exec_block(sb.body))
        finally:
            self.variables["_"] = saved

    # expressions
    def eval(self, n: Node) -> Any:
        if isinstance(n, Lit):
            return n.value
        if isinstance(n, Var):
            return self.variables.get(n.name.lower())
        if isinstance(n, ArrayExpr):
            return list(self.exec_block(n.body))
        if isinstance(n, SubExpr):
            return _unwrap(list(self.run_pipeline(n.pipeline)))
        if isinstance(n, HashExpr):
            out: dict[str, Any] = {}
            for key, st in n.items:
                if isinstance(st, Pipeline) and len(st.elements) == 1 and not isinstance(st.elements[0], Command):
                    out[key] = self.eval(st.elements[0])
                else:
                    out[key] = _unwrap(list(self.exec_stmt(st)))
            return out
        if isinstance(n, Block):
            return n.block
        if isinstance(n, Not):
            return not to_bool(self.eval(n.value))
        if isinstance(n, BinOp):
            if n.op == "and":
                return to_bool(self.eval(n.left)) and to_bool(self.eval(n.right))
            if n.op == "or":
                return to_bool(self.eval(n.left)) or to_bool(self.eval(n.right))
            return _compare(n.op, self.eval(n.left), self.eval(n.right))
        if isinstance(n, Cast):
            return _cast(n.type_name, self.eval(n.value), n.pos)
        if isinstance(n, Index):
            obj = self.eval(n.obj)
            idx = self.eval(n.index)
            if isinstance(obj, list | bytes) and isinstance(idx, int):
                try:
                    return obj[idx]
                except IndexError:
                    return None
            if isinstance(obj, dict):
                return get_member(obj, to_string(idx))
            return None
        if isinstance(n, TypeLit):
            raise PSError(
                f"Unable to find type [{n.name}].",
                category="InvalidOperation",
                error_id="TypeNotFound",
                target=n.name,
                target_type="TypeName",
                pos=n.pos,
            )
        if isinstance(n, Member):
            if n.static:
                assert isinstance(n.obj, TypeLit)
                return _static(n.obj.name, n.name, [self.eval(a) for a in n.args or []], n.pos)
            obj = self.eval(n.obj)
            if n.args is None:
                return get_member(obj, n.name)
            return _call_method(obj, n.name, [self.eval(a) for a in n.args], n.pos)
        raise PSError(f"cannot evaluate {type(n).__name__}")


def _cmd_fqn(cdef: CmdDef) -> str:
    ns = {"Hyper-V": "Microsoft.HyperV.PowerShell.Commands"}.get(cdef.module, "Microsoft.PowerShell.Commands")
    return (
        f"{ns}.{cdef.name.replace('-', '')}Command"
        if cdef.module != "Hyper-V"
        else f"{ns}.{cdef.name.replace('-', '')}"
    )


def _unwrap(vals: list[Any]) -> Any:
    """Pipeline output as a value: nothing -> $null, one object -> it, more -> an array."""
    if not vals:
        return None
    if len(vals) == 1:
        return vals[0]
    return vals


def _enumerate(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list):
        return v
    return [v]


def _cast(tn: str, v: Any, pos: int) -> Any:
    t = tn.lower()
    try:
        if t == "string":
            return to_string(v)
        if t in ("int", "int32", "int64", "long", "uint64"):
            if isinstance(v, PSEnum):
                return v.value
            if isinstance(v, float):
                return round(v)
            if v is None:
                return 0
            return int(v)
        if t == "bool":
            return to_bool(v)
        if t == "array":
            return _enumerate(v)
    except (TypeError, ValueError):
        raise PSError(
            f'Cannot convert value "{to_string(v)}" to type "System.{tn}".',
            category="InvalidArgument",
            error_id="InvalidCastFromStringToInteger",
            exception="RuntimeException",
            pos=pos,
        ) from None
    raise PSError(
        f"Unable to find type [{tn}].",
        category="InvalidOperation",
        error_id="TypeNotFound",
        target=tn,
        target_type="TypeName",
        pos=pos,
    )


class _Utf8:
    type_name = "System.Text.UTF8Encoding"


def _static(tn: str, member: str, args: list[Any], pos: int) -> Any:
    t, m = tn.lower().removeprefix("system."), member.lower()
    if t == "convert" and m == "frombase64string" and len(args) == 1:
        try:
            return base64.b64decode(to_string(args[0]), validate=True)
        except ValueError:
            raise PSError(
                'Exception calling "FromBase64String" with "1" argument(s): "The input is not a valid Base-64 '
                "string as it contains a non-base 64 character, more than two padding characters, or an illegal "
                'character among the padding characters. "',
                category="NotSpecified",
                error_id="FormatException",
                exception="MethodInvocationException",
                pos=pos,
            ) from None
    if t == "text.encoding" and m == "utf8":
        return _Utf8()
    if t == "environment" and m == "osversion":
        return PSObject(
            {"Platform": "Win32NT", "Version": "10.0.20348.0", "VersionString": "Microsoft Windows NT 10.0.20348.0"}
        )
    raise PSError(
        f"Method invocation failed because [{tn}] does not contain a method named '{member}'.",
        category="InvalidOperation",
        error_id="MethodNotFound",
        exception="RuntimeException",
        pos=pos,
    )


def _call_method(obj: Any, name: str, args: list[Any], pos: int) -> Any:
    m = name.lower()
    if isinstance(obj, _Utf8) and m == "getstring" and len(args) == 1 and isinstance(args[0], bytes):
        return args[0].decode("utf-8", errors="replace")
    if m == "tostring" and not args:
        return to_string(obj)
    if isinstance(obj, _ExceptionValue) and m == "gettype" and not args:
        return PSObject({"FullName": obj.full_name, "Name": obj.full_name.rsplit(".", 1)[-1]})
    if obj is None:
        raise PSError(
            "You cannot call a method on a null-valued expression.",
            category="InvalidOperation",
            error_id="InvokeMethodOnNull",
            exception="RuntimeException",
            pos=pos,
        )
    raise PSError(
        f"Method invocation failed because [{type_name(obj)}] does not contain a method named '{name}'.",
        category="InvalidOperation",
        error_id="MethodNotFound",
        exception="RuntimeException",
        pos=pos,
    )
