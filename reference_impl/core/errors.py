"""The core's exceptions, with whose fault it is built into the class.

`InvalidInput` is the caller's fault (maps to 4xx / exit code 2); `InvariantViolation` is ours
(a bug in the reference implementation: maps to 5xx and must never be swallowed).
"""


class DomainError(Exception):
    """Base of every error the core raises."""


class InvalidInput(DomainError):
    """The caller sent something the rules reject; the message names the field and the rule."""


class InvalidAmount(InvalidInput):
    pass


class UnknownCurrency(InvalidInput):
    pass


class IllegalTransition(InvalidInput):
    """A state machine was asked for a move its table does not allow; the state is unchanged."""


class InvariantViolation(DomainError):
    """The implementation broke one of its own invariants."""
