"""Documents for the fuzz suite: valid ones drawn from the models' JSON schemas, then mutated.

The suite crosses rooms (config, acquisition, night, web, the command line), so it mirrors no
source folder. Here are its inputs:

- `from_schema` turns a pydantic model's ``model_json_schema()`` into a strategy for documents
  that satisfy the schema: every field, its bounds and lengths, unions and their tags. The
  models' rules between fields (a LIGHT step needs a target...) are not in the schema;
  `tests/fuzz/valid.py` completes the documents with them.
- `mutated` breaks such a document in one to three places: a value of the wrong type, an
  extreme number, a non-finite one, hostile Unicode, a huge string or array, deep nesting, a
  missing key or an unknown one.
- `toml_text` and `json_body` write documents out as the files and request bodies the daemon
  reads, able to carry what a careful writer would refuse (NaN, lone surrogates), and
  `garbled` mutates the text itself (truncated, invalid UTF-8, deeply nested, duplicated).
"""

from __future__ import annotations

import json
import math
from collections import deque
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "HOSTILE_KEYS",
    "HOSTILE_TEXTS",
    "from_schema",
    "garbled",
    "hostile",
    "json_body",
    "mutated",
    "toml_text",
]

# Arrays drawn for valid documents stay short: the point is their items, and a long plan
# makes every example slow.
_MAX_ITEMS = 3
_MAX_TEXT = 24
# Nights the plans may use (obsctl.night.plan.NIGHT_YEARS), for windows and dates.
_FIRST = datetime(1900, 1, 1)
_LAST = datetime(2199, 12, 31)

#: Nesting deep enough to trip a recursive parser, yet within what `json.dumps` writes.
_NESTED = 200
#: Sizes of the huge strings (past every bound, and a megabyte) and arrays (past every bound
#: and the documents' value limits; a million would only time tomllib's parsing).
_HUGE_TEXT = (10_001, 1_000_001)
_HUGE_LIST = (10_001, 200_001)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Return a strategy for documents that satisfy a pydantic model's JSON schema.

    Covers what pydantic writes for obsctl's models: objects (required and optional
    properties, ``additionalProperties`` maps), ``$ref``, ``anyOf``/``oneOf``, ``enum``,
    ``const``, bounded integers and numbers, strings with lengths and patterns, ``date``,
    ``date-time`` and ``path`` formats, arrays and fixed-length tuples. Dates come as
    `datetime.date` and `datetime.datetime`, as tomllib gives them.
    """
    defs: dict[str, Any] = schema.get("$defs", {})
    compiled: dict[str, st.SearchStrategy[Any]] = {}

    def ref(name: str) -> st.SearchStrategy[Any]:
        if name not in compiled:
            # Deferred: a model may refer to itself; compiled once, however often it is used.
            compiled[name] = st.deferred(lambda: node(defs[name]))
        return compiled[name]

    def node(s: dict[str, Any]) -> st.SearchStrategy[Any]:
        if "$ref" in s:
            return ref(s["$ref"].rsplit("/", 1)[1])
        if "const" in s:
            return st.just(s["const"])
        if "enum" in s:
            return st.sampled_from(s["enum"])
        for key in ("anyOf", "oneOf"):
            if key in s:
                return st.one_of([node(option) for option in s[key]])
        kind = s.get("type")
        if kind == "object":
            return _object(s, node)
        if kind == "array":
            return _array(s, node)
        if kind == "string":
            return _string(s)
        if kind == "integer":
            return _integer(s)
        if kind == "number":
            return _number(s)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if "maxLength" in s or "minLength" in s:  # a map's key names
            return _string(s)
        raise NotImplementedError(f"schema keyword not covered: {sorted(s)}")

    return node(schema)


def _object(s: dict[str, Any], node: Any) -> st.SearchStrategy[Any]:
    properties = s.get("properties")
    if properties is None:  # a map: dict[str, X]
        keys = node(s.get("propertyNames", {"type": "string"}))
        values = node(s.get("additionalProperties", {}))
        return st.dictionaries(keys, values, max_size=s.get("maxProperties", _MAX_ITEMS))
    required = set(s.get("required", ()))
    return st.fixed_dictionaries(
        {k: node(v) for k, v in properties.items() if k in required},
        optional={k: node(v) for k, v in properties.items() if k not in required},
    )


def _array(s: dict[str, Any], node: Any) -> st.SearchStrategy[Any]:
    if "prefixItems" in s:
        return st.tuples(*(node(item) for item in s["prefixItems"])).map(list)
    # At least one item: the models check "not empty" in validators the schema does not show,
    # and empty lists come from the mutations.
    low = max(s.get("minItems", 1), 1)
    high = min(s.get("maxItems", _MAX_ITEMS), max(low, _MAX_ITEMS))
    return st.lists(node(s.get("items", {})), min_size=low, max_size=high)


def _string(s: dict[str, Any]) -> st.SearchStrategy[Any]:
    fmt = s.get("format")
    if fmt == "date-time":
        return st.datetimes(_FIRST, _LAST, timezones=st.just(UTC))
    if fmt == "date":
        return st.dates(_FIRST.date(), _LAST.date())
    low = s.get("minLength", 0)
    high = min(s.get("maxLength", _MAX_TEXT), max(low, _MAX_TEXT))
    if "pattern" in s:  # a URL's scheme and the like: text that matches, NUL left out
        # Python's "$" also matches before a final newline; pydantic's (Rust) regex does not.
        pattern = s["pattern"]
        return st.from_regex(pattern, alphabet=st.characters(codec="utf-8")).filter(
            lambda text: (
                low <= len(text) <= max(high, 200)
                and "\x00" not in text
                and not (pattern.endswith("$") and text.endswith("\n"))
            )
        )
    # Any Unicode but NUL, which no text field takes (the mutations bring it).
    letters = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
    return st.text(letters, min_size=low, max_size=high)


def _integer(s: dict[str, Any]) -> st.SearchStrategy[int]:
    low, high = s.get("minimum"), s.get("maximum")
    if "exclusiveMinimum" in s:
        low = s["exclusiveMinimum"] + 1
    if "exclusiveMaximum" in s:
        high = s["exclusiveMaximum"] - 1
    return st.integers(low, high)


def _number(s: dict[str, Any]) -> st.SearchStrategy[float]:
    low = s.get("minimum", s.get("exclusiveMinimum"))
    high = s.get("maximum", s.get("exclusiveMaximum"))
    return st.floats(
        min_value=None if low is None else float(low),
        max_value=None if high is None else float(high),
        exclude_min="exclusiveMinimum" in s,
        exclude_max="exclusiveMaximum" in s,
        allow_nan=False,
        allow_infinity=False,
    )


# -- hostile values --------------------------------------------------------------------------


def _copy(doc: Any) -> Any:
    # Documents from the schema hold dicts, lists and scalars only (no deep nesting yet).
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc


#: Texts no field expects: controls, NUL, lone surrogates, astral and right-to-left
#: characters, numbers and paths spelled as text.
HOSTILE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r\x0b\x0c",
    "\x1b[31mred\x1b[0m",  # a terminal escape
    "\x7f\x80\x9f",  # DEL and C1 controls
    "\ud800",  # lone surrogates: not UTF-8, not storable
    "a\udfffb",
    "\U0001d518\U0001d52b\U0001f52d\U0010ffff",  # astral
    "e\u0301\u0301\u0301\u0301",  # combining marks
    "\u202eevil\u202c",  # right-to-left override
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew
    "\ufeffBOM",
    "\u2028line\u2029paragraph",
    "\uff2d\u3000\uff13\uff11",  # full-width "M 31"
    "١٢٣",  # Arabic-Indic digits
    "NaN",
    "-Infinity",
    "1e308",
    "0x10",
    "1_000",
    "null",
    "true",
    "../../../etc/passwd",
    "'; DROP TABLE exposures; --",
    "${HOME}",
    "%s%n%x",
    "<script>alert(1)</script>",
]
_NUMBERS = [
    0,
    -1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**400,  # beyond any float; JSON writes it, 4300 digits is Python's limit
    -(10**400),
    1e308,
    -1e308,
    1.7976931348623157e308,
    -0.0,
    5e-324,  # the smallest denormal
    2.2250738585072014e-308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
]
_TIMES = [
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 25, 21, 0, tzinfo=timezone(timedelta(hours=23, minutes=59))),
    date(1, 1, 1),
    date(9999, 12, 31),
    time(23, 59, 59),
]
# Copied when drawn: a later mutation may add to a list or table drawn here, and the next
# example must find the samples as they were (else Hypothesis cannot replay it).
_SMALL = st.sampled_from(
    [*HOSTILE_TEXTS, *_NUMBERS, *_TIMES, None, [], {}, [None], {"": None}]
).map(_copy)

#: Key names no model has: empty, NUL, control characters, astral, a dot or bracket that a
#: key path would show, and a long one.
HOSTILE_KEYS = st.one_of(
    st.sampled_from(
        [
            "",
            "\x00",
            "a.b",
            "x[0]",
            "\n",
            "key\nsecond line",
            "\u202e",
            "\U0001d528\U0001d522\U0001d536",
        ]
    ),
    st.just(100_000).map(lambda n: "k" * n),  # built on use: its repr stays short
    st.text(min_size=1, max_size=8),
)


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if depth % 2 else {"a": value}
    return value


def hostile() -> st.SearchStrategy[Any]:
    """Return a strategy for one value no field expects, or one at the edge of what it takes."""
    return st.one_of(
        _SMALL,
        st.floats(),  # NaN, infinities, denormals, -0.0
        st.integers(),
        st.text(st.characters(codec=None, exclude_categories=())),  # any code point
        st.sampled_from(_HUGE_TEXT).map(lambda n: "x" * n),
        st.sampled_from(_HUGE_LIST).map(lambda n: [1.5] * n),
        st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.sampled_from((1000, 100_000))),
        st.builds(_nested, st.sampled_from((2, 50, _NESTED)), _SMALL),
        st.lists(_SMALL, max_size=4),
        st.dictionaries(HOSTILE_KEYS, _SMALL, max_size=3),
    )


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Return every (container, key or index) of a document, parents before children.

    A huge container a mutation put in is one place, not a million.
    """
    found: list[tuple[Any, Any]] = []
    todo = deque([doc])
    while todo:
        node = todo.popleft()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            found.append((node, key))
            if isinstance(value, dict | list) and len(value) <= 100:
                todo.append(value)
    return found


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """Return a document from ``documents`` broken in one to three places.

    A place is replaced by a hostile value, removed, or joined by an unknown key or item.
    The top level stays a table (what tomllib and the API's body check give the parsers).
    """
    doc = _copy(draw(documents))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "add" or not slots:
            # A new key in a table, or a new item in a list (the whole document included).
            tables = [doc] + [
                c[k] for c, k in slots if isinstance(c[k], dict | list) and len(c[k]) <= 100
            ]
            target = tables[draw(st.integers(0, len(tables) - 1))]
            if isinstance(target, dict):
                target[draw(HOSTILE_KEYS)] = draw(hostile())
            else:
                target.append(draw(hostile()))
            continue
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        if action == "remove":
            del container[key]
        else:
            container[key] = draw(hostile())
    return doc


# -- as files and bodies ---------------------------------------------------------------------


def _toml_string(text: str) -> str:
    if text.isprintable():  # the common case, and the megabyte ones: no escape loop
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            # Lone surrogates too (not printable): TOML refuses the escape, as it should.
            out.append(f"\\u{ord(c):04X}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08X}")
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str | None:
    if value is None:
        return None  # TOML has no null: the key is left out
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        pairs = [(k, _toml_value(v)) for k, v in value.items()]
        return "{" + ", ".join(f"{_toml_string(k)} = {v}" for k, v in pairs if v is not None) + "}"
    items = [_toml_value(v) for v in value]
    return "[" + ", ".join(v for v in items if v is not None) + "]"


def toml_text(doc: dict[str, Any]) -> str:
    """Return a document as TOML text: one ``key = value`` line per top-level key.

    Tables are written inline; None values are left out (TOML has no null); non-finite
    numbers are TOML's ``nan`` and ``inf``; lone surrogates become escapes TOML refuses.
    """
    lines = []
    for key, value in doc.items():
        text = _toml_value(value)
        if text is not None:
            lines.append(f"{_toml_string(key)} = {text}")
    return "\n".join(lines) + "\n"


def _iso(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def json_body(doc: Any, *, ascii_only: bool) -> bytes:
    """Return a document as a JSON body, as a careless client would send it.

    NaN and infinities are written as JavaScript's constants; lone surrogates as ``\\ud800``
    escapes (``ascii_only``) or as the invalid UTF-8 of the raw code point.
    """
    text = json.dumps(doc, default=_iso, allow_nan=True, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def garbled(draw: st.DrawFn, text: bytes) -> bytes:
    """Return ``text`` (a file or a body) damaged at the byte level, deeply nested, or with a
    number of thousands of digits."""
    kind = draw(
        st.sampled_from(
            ["truncate", "insert", "nest", "number", "duplicate", "bom", "invalid", "empty"]
        )
    )
    at = draw(st.integers(0, len(text)))
    if kind == "truncate":
        return text[:at]
    if kind == "insert":
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    if kind == "nest":
        depth = draw(st.sampled_from((1_000, 100_000)))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        return text[:at] + opener * depth + closer * depth + text[at:]
    if kind == "number":  # more digits than int() reads (Python's limit is 4300)
        return text + b"\nnumber = " + b"9" * draw(st.sampled_from((400, 5000))) + b"\n"
    if kind == "duplicate":
        return text + b"\n" + text
    if kind == "bom":
        return b"\xef\xbb\xbf" + text
    if kind == "invalid":
        return (
            text[:at] + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80"])) + text[at:]
        )
    return b""
