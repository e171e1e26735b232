"""Hostess's branch of the exception tree.

::

    PykernelError
     └── HostessError                 anything Hostess refuses (exit 1)
          ├── IdentityError           a malformed identity string or field
          ├── QueryError              a filter expression that does not parse (column + caret)
          ├── InputError              a malformed record, terminal, tag, lease or request body
          ├── SchemaError             a database this version cannot read or migrate
          ├── NotFoundError           no such guest, allocation or terminal
          └── ConflictError           the request clashes with what is recorded
               └── InsufficientError  fewer free terminals or guests than asked for

Every refusal happens before anything is written, or inside a transaction that is rolled
back: a raised :class:`HostessError` means the database is unchanged.
"""

from __future__ import annotations

from pykernel._errors import PykernelError


class HostessError(PykernelError):
    """Root of every error Hostess raises on purpose."""


class IdentityError(HostessError):
    """An identity string or field that breaks the rules.

    Attributes:
        field: the identity field at fault (``fqdn``, ``servername``, ``classHex``, ``owner``,
            ``authFlag``, ``authMechanism``, ``uuid``) or ``identity`` for the whole string.
        value: the offending text.
        reason: why it is refused.

    """

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        where = "identity" if field == "identity" else f"identity field {field}"
        super().__init__(f"{where} {value!r}: {reason}")


class QueryError(HostessError):
    """A filter expression that cannot be parsed or compiled.

    Attributes:
        expression: the whole expression.
        column: 1-based column of the bad token.
        token: the bad token itself.
        reason: why it is refused.

    """

    def __init__(self, expression: str, column: int, token: str, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.token = token
        self.reason = reason
        super().__init__(f"query column {column} ({token!r}): {reason}")

    def caret(self) -> str:
        """Return the expression and a caret line under the bad token (two lines)."""
        width = max(1, len(self.token))
        return f"{self.expression}\n{' ' * (self.column - 1)}^{'~' * (width - 1)}"


class InputError(HostessError):
    """A malformed value outside the identity: terminal, tag, metadata, lease or body.

    Attributes:
        where: what was being read (``terminal[2].direction``, ``body.count``, ...).

    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class SchemaError(HostessError):
    """A registry database this version of Hostess cannot read or migrate."""


class NotFoundError(HostessError):
    """No guest, allocation or terminal by that name."""


class ConflictError(HostessError):
    """The request clashes with what is already recorded (nothing was changed)."""


class InsufficientError(ConflictError):
    """Fewer free terminals (or whole guests) match the filter than were asked for."""
