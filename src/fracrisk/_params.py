"""Declared constraints on estimator settings, checked in ``fit`` (as scikit-learn does).

An estimator lists, for each parameter of its ``__init__``, the values it accepts::

    _parameter_constraints = {
        "batch_size": [Interval(int, 2, None)],
        "ties": [Options("efron", "breslow")],
        "checkpoint_dir": [None, InstanceOf(str, os.PathLike)],
    }

``__init__`` only stores what it is given (so ``sklearn.base.clone`` can rebuild it), and
``fit`` calls :func:`validate_params`, which raises one :class:`InvalidParameterError`
naming the estimator, the parameter, what is allowed and what was passed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Callable_",
    "InstanceOf",
    "Interval",
    "InvalidParameterError",
    "Options",
    "SequenceOf",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A setting passed to an estimator is not one of the values it accepts."""


@dataclass(frozen=True)
class Interval:
    """A real or integer number in ``[low, high]`` (``closed`` says which ends are included).

    ``kind`` is ``int`` (booleans refused) or ``float`` (any real number, finite).
    ``None`` for an end means unbounded.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return False
        left_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        right_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return bool(left_ok and right_ok)

    def __str__(self) -> str:
        name = "an int" if self.kind is int else "a float"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{name} in {left}{lo}, {hi}{right}"


class Options:
    """One of a fixed set of values (strings, booleans, ...)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def accepts(self, value: Any) -> bool:
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class InstanceOf:
    """An instance of one of the given types."""

    def __init__(self, *types: type, description: str | None = None) -> None:
        self.types, self.description = types, description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def __str__(self) -> str:
        if self.description:
            return self.description
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


class SequenceOf:
    """A list or tuple whose every element meets ``item`` (possibly empty if ``min_len`` 0)."""

    def __init__(self, item: Interval | Options | InstanceOf, *, min_len: int = 0) -> None:
        self.item, self.min_len = item, min_len

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and len(value) >= self.min_len
            and all(self.item.accepts(v) for v in value)
        )

    def __str__(self) -> str:
        return f"a list or tuple of {self.item}" + (
            f" (at least {self.min_len})" if self.min_len else ""
        )


class Callable_:  # noqa: N801 - reads as "a callable"
    """Anything callable."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


def _describe(constraint: Any) -> str:
    return "None" if constraint is None else str(constraint)


def validate_params(
    estimator: Any, constraints: Mapping[str, list], params: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`InvalidParameterError` for the first setting no constraint accepts.

    Parameters
    ----------
    estimator : object
        The estimator (its class name goes in the message).
    constraints : mapping of str to list
        For each parameter, the accepted forms: ``None`` (the value None) or constraint
        objects (:class:`Interval`, :class:`Options`, :class:`InstanceOf`, ...).
    params : mapping, optional
        The values; by default ``estimator.get_params()``.
    """
    params = estimator.get_params() if params is None else params
    for name, value in params.items():
        if name not in constraints:
            continue
        allowed = constraints[name]
        if any(_accepts(c, value) for c in allowed):
            continue
        what = " or ".join(_describe(c) for c in allowed)
        raise InvalidParameterError(
            f"{type(estimator).__name__}: parameter {name!r} must be {what}; got {value!r}"
        )


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    return bool(constraint.accepts(value))
