"""The one filter expression language, shared by Python, the CLI and HTTP.

An expression is terms separated by spaces; all terms must hold (AND). The empty
expression matches every guest.

=========================== ==========================================================
term                        holds for a guest when
=========================== ==========================================================
``class&MASK=VALUE``        ``class & MASK == VALUE`` (numbers: ``0x`` hex or decimal,
                            64 bits at most)
``class=VALUE``             the class is exactly VALUE
``fqdn=PAT``                the host name matches PAT (lower-cased)
``server=PAT``              the server name matches (``servername=`` is the same)
``owner=PAT``               the owner matches
``uuid=PAT``                the UUID matches (lower-case)
``auth=0`` / ``auth=1``     the authFlag is 0 / 1
``mechanism=PAT``           the auth mechanism matches (``auth.mechanism=`` too)
``tag=PAT``                 some tag matches; several ``tag=`` terms must all match
``terminal=PAT``            it has a terminal whose name matches...
``terminal.direction=DIR``  ...whose direction is DIR (input, output, multiplexer,
                            combiner)...
``free`` / ``used``         ...which is free / in use
=========================== ==========================================================

Terminal terms (``terminal``, ``terminal.direction``, ``free``, ``used``) all apply to the
*same* terminal. PAT is exact unless it holds a glob character: ``*`` (any run), ``?`` (one
character), ``[abc]`` / ``[a-z]`` / ``[^abc]`` (one of a set); matching is case-sensitive.

Example: ``class&0xff00=0x1200 owner=lab* tag=gpu tag=fast terminal.direction=input free``.

Errors are :class:`~control.hostess.errors.QueryError` with the 1-based column of the bad
token; ``QueryError.caret()`` draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control.hostess.errors import QueryError
from control.hostess.identity import AUTH_MECHANISMS, CLASS_BITS
from control.manifest import DIRECTIONS

MAX_EXPRESSION = 4096
"""Longest accepted expression, in characters."""
MAX_TERMS = 64
"""Most terms in one expression."""

_GUEST_COLUMNS = {
    "fqdn": "g.fqdn",
    "server": "g.servername",
    "servername": "g.servername",
    "owner": "g.owner",
    "uuid": "g.uuid",
    "mechanism": "g.auth_mechanism",
    "auth.mechanism": "g.auth_mechanism",
}
_FIELDS = (*_GUEST_COLUMNS, "class", "auth", "tag", "terminal", "terminal.direction")
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]+|[0-9]+")
_TOKEN = re.compile(r"\S+")
_GLOB_CHARS = re.compile(r"[*?\[]")
_MASK64 = (1 << CLASS_BITS) - 1
_USED_GUESTS = "SELECT guest_id FROM terminals WHERE uses > 0"  # the terminals_used index


def to_signed(value: int) -> int:
    """Map an unsigned 64-bit class to SQLite's signed 64-bit integer (two's complement)."""
    return value - (1 << CLASS_BITS) if value >> (CLASS_BITS - 1) else value


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled filter: SQL fragments over guests ``g`` and terminals ``t``.

    Attributes:
        text: the expression it was compiled from.
        guest_sql: a condition on guest row ``g`` (``1`` when there is none).
        guest_params: parameters of ``guest_sql``.
        terminal_sql: a condition on terminal row ``t`` (``1`` when there is none).
        terminal_params: parameters of ``terminal_sql``.
        has_terminal_terms: whether any term constrains terminals.

    """

    text: str
    guest_sql: str
    guest_params: tuple[object, ...]
    terminal_sql: str
    terminal_params: tuple[object, ...]
    has_terminal_terms: bool

    def guests_where(self) -> tuple[str, tuple[object, ...]]:
        """Return a condition on ``g`` that holds when the guest matches, with parameters."""
        if not self.has_terminal_terms:
            return self.guest_sql, self.guest_params
        sql = (
            f"{self.guest_sql} AND EXISTS (SELECT 1 FROM terminals t "
            f"WHERE t.guest_id = g.id AND {self.terminal_sql})"
        )
        return sql, self.guest_params + self.terminal_params


def _check_glob(expr: str, column: int, value: str) -> None:
    """Refuse a ``[`` set that never closes (SQLite would silently match nothing)."""
    opening = value.find("[")
    while opening != -1:
        skip = 2 if value[opening + 1 : opening + 2] in ("^", "]") else 1
        close = value.find("]", opening + skip)
        if close == -1:
            raise QueryError(expr, column + opening, value[opening:], "unclosed [ in pattern")
        opening = value.find("[", close + 1)


def _match(column: str, value: str) -> tuple[str, object]:
    """Exact values use ``=`` (an index lookup); patterns use GLOB (index on a prefix)."""
    if _GLOB_CHARS.search(value):
        return f"{column} GLOB ?", value
    return f"{column} = ?", value


def _number(expr: str, column: int, text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise QueryError(expr, column, text or "=", f"{what} must be 0x-hex or decimal")
    value = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
    if value > _MASK64:
        raise QueryError(expr, column, text, f"{what} wider than {CLASS_BITS} bits")
    return value


def _class_term(expr: str, column: int, token: str) -> tuple[str, tuple[object, ...]]:
    body = token[len("class") :]
    if body.startswith("="):
        value = _number(expr, column + 6, body[1:], "class value")
        return _class_sql(_MASK64, value)
    if not body.startswith("&") or "=" not in body:
        raise QueryError(expr, column, token, "write class&MASK=VALUE or class=VALUE")
    mask_text, value_text = body[1:].split("=", 1)
    mask = _number(expr, column + 6, mask_text, "class mask")
    value_column = column + 7 + len(mask_text)
    value = _number(expr, value_column, value_text, "class value")
    if value & ~mask:
        reason = f"value has bits outside the mask {mask:#x}, so nothing could match"
        raise QueryError(expr, value_column, value_text, reason)
    return _class_sql(mask, value)


_TOP_ALIGNED = {(0xFF << (8 - n)) & 0xFF: n for n in range(1, 9)}  # 0x80, 0xc0, ... 0xff


def _class_sql(mask: int, value: int) -> tuple[str, tuple[object, ...]]:
    """``class & mask = value``, plus conditions the per-byte class indexes can answer.

    The schema indexes each byte of the class (``(class >> 8k) & 255``). A mask byte that is
    0xff, or a run of top bits (0xf0, 0xc0...), turns into an equality or a range on that
    index, so a mask query seeks instead of scanning every guest. The exact test stays.
    """
    conditions = ["(g.class & ?) = ?"]
    params: list[object] = [to_signed(mask), to_signed(value)]
    for byte in range(CLASS_BITS // 8):
        mask_byte = (mask >> (8 * byte)) & 0xFF
        value_byte = (value >> (8 * byte)) & 0xFF
        if mask_byte not in _TOP_ALIGNED:
            continue  # 0x00 says nothing; a byte like 0x0f cannot use the index
        column = f"((g.class >> {8 * byte}) & 255)"  # must match the index expression
        if mask_byte == 0xFF:
            conditions.append(f"{column} = ?")
            params.append(value_byte)
        else:
            conditions.append(f"{column} BETWEEN ? AND ?")
            params.extend((value_byte, value_byte | (~mask_byte & 0xFF)))
    return " AND ".join(conditions), tuple(params)


def _field_term(expr: str, column: int, token: str) -> tuple[bool, str, object]:
    """Compile ``FIELD=VALUE``; return (is a terminal term, SQL, parameter)."""
    if "=" not in token:
        reason = "expected FIELD=VALUE, class&MASK=VALUE, free or used"
        raise QueryError(expr, column, token, reason)
    field, value = token.split("=", 1)
    vcol = column + len(field) + 1
    if field not in _FIELDS:
        raise QueryError(expr, column, field, f"unknown field (known: {', '.join(_FIELDS)})")
    if not value:
        raise QueryError(expr, column, token, f"{field}= needs a value")
    _check_glob(expr, vcol, value)
    exact = not _GLOB_CHARS.search(value)
    if field == "auth":
        if value not in ("0", "1"):
            raise QueryError(expr, vcol, value, "auth must be 0 or 1")
        return False, "g.auth_flag = ?", int(value)
    if field == "terminal.direction":
        if value not in DIRECTIONS:
            reason = f"direction must be one of {', '.join(DIRECTIONS)}"
            raise QueryError(expr, vcol, value, reason)
        return True, "t.direction = ?", value
    if field == "terminal":
        return True, *_match("t.name", value)
    if field == "tag":
        return False, *_match("tag", value)  # parse() gathers the tag terms
    if field.endswith("mechanism") and exact and value not in AUTH_MECHANISMS:
        known = "|".join(sorted(AUTH_MECHANISMS))
        raise QueryError(expr, vcol, value, f"unknown auth mechanism (known: {known})")
    if field in ("fqdn", "uuid"):
        value = value.lower()  # stored lower-case
    return False, *_match(_GUEST_COLUMNS[field], value)


def parse(text: str) -> Query:
    """Compile a filter expression.

    Args:
        text: the expression (see the module docstring); empty matches everything.

    Returns:
        The compiled :class:`Query`.

    Raises:
        QueryError: with the column of the first bad token and why.

    """
    if not isinstance(text, str):
        raise QueryError(repr(text), 1, repr(text), "expression must be a string")
    if len(text) > MAX_EXPRESSION:
        reason = f"longer than {MAX_EXPRESSION} characters"
        raise QueryError(text[:40] + "...", MAX_EXPRESSION + 1, text[MAX_EXPRESSION], reason)
    for index, char in enumerate(text):
        if not char.isprintable() and not char.isspace():
            raise QueryError(text, index + 1, repr(char), "non-printable character")
    guest: list[str] = ["1"]
    gparams: list[object] = []
    term: list[str] = ["1"]
    tparams: list[object] = []
    seen: dict[str, int] = {}
    tags: list[str] = []
    tag_params: list[object] = []
    for number, match in enumerate(_TOKEN.finditer(text)):
        token, column = match.group(), match.start() + 1
        if number == MAX_TERMS:
            raise QueryError(text, column, token, f"more than {MAX_TERMS} terms")
        if token in ("free", "used"):
            other = "used" if token == "free" else "free"
            if other in seen:
                reason = f"contradicts {other!r} at column {seen[other]}"
                raise QueryError(text, column, token, reason)
            seen[token] = column
            term.append("t.uses > 0" if token == "used" else "t.uses = 0")
        elif token.startswith("class") and token[5:6] in ("&", "="):
            sql, params = _class_term(text, column, token)
            guest.append(sql)
            gparams.extend(params)
        else:
            is_terminal, sql, param = _field_term(text, column, token)
            if token.startswith("tag="):
                tags.append(sql)
                tag_params.append(param)
                continue
            (term if is_terminal else guest).append(sql)
            (tparams if is_terminal else gparams).append(param)
    if tags:
        # One set of guest ids for all tag terms: the tags index answers it without a scan.
        subquery = " INTERSECT ".join(f"SELECT guest_id FROM tags WHERE {sql}" for sql in tags)
        guest.append(f"g.id IN ({subquery})")
        gparams.extend(tag_params)
    if "used" in seen:
        # Few terminals are in use: start from them rather than from every guest.
        guest.append(f"g.id IN ({_USED_GUESTS})")
    return Query(
        text=text,
        guest_sql=" AND ".join(guest),
        guest_params=tuple(gparams),
        terminal_sql=" AND ".join(term),
        terminal_params=tuple(tparams),
        has_terminal_terms=len(term) > 1,
    )
