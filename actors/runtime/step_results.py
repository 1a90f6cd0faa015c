"""How a step's result is journaled and given back: the same type live, on replay and on restart.

A step's result is decoded to the type the step declares: its function's return annotation, or
an explicit ``result_type=`` (as Restate's ``run_typed``). The live result is decoded from the
very data that was journaled, so a handler sees the same value and type on the first run, after
a crash and after ``tether sessions restart --from-step``. A step that declares no type may
return only plain data (None, bool, int, float, str, bytes, lists and str-keyed maps; tuples
become lists both live and on replay). Anything else (a model from an undeclared lambda, a
dataclass) fails the step live with `StepTypeError`, naming the step and how to declare it: a
type is never restored by importing a class name read from the log.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from eventstore.codec import pack

from ..errors import RecordTooLargeError, StepTypeError

_PLAIN_SCALARS = (str, int, float, bool, bytes, type(None))
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def declared_type(fn: Callable[..., Any]) -> Any:  # noqa: ANN401 - a type annotation
    """The return annotation of a step function, or None (lambdas, partials, no annotation)."""
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # lambdas and partials have none; unresolvable names count as none
        return None
    if hint is None or hint is Any or isinstance(hint, typing.TypeVar):
        return None
    return hint


def _adapter(result_type: Any) -> TypeAdapter[Any]:  # noqa: ANN401 - a type annotation
    try:
        found = _ADAPTERS.get(result_type)
    except TypeError:  # an unhashable annotation: build it each time
        return TypeAdapter(result_type)
    if found is None:
        found = _ADAPTERS[result_type] = TypeAdapter(result_type)
    return found


class StepResults:
    """Encoder and decoder of one step's result, for its declared type (or plain data)."""

    __slots__ = ("_name", "_type", "_model", "_adapter")

    def __init__(self, name: str, result_type: Any) -> None:  # noqa: ANN401 - a type annotation
        self._name = name
        self._type = result_type
        self._model = result_type if isinstance(result_type, type) and issubclass(result_type, BaseModel) else None
        self._adapter = None if result_type is None or self._model is not None else _adapter(result_type)

    @classmethod
    def of(cls, name: str, result_type: Any) -> StepResults:  # noqa: ANN401 - a type annotation
        """The codec of step `name` whose results are `result_type` (None: plain data)."""
        return cls(name, result_type)

    def encode(self, value: Any, limit: int) -> Any:  # noqa: ANN401 - a step's result
        """The journal form of `value`; raises `StepTypeError` or `RecordTooLargeError`."""
        if self._model is not None:
            if not isinstance(value, self._model):
                try:
                    value = self._model.model_validate(value)
                except pydantic.ValidationError as exc:
                    raise self._mismatch(value, exc) from exc
            plain: Any = value.model_dump(mode="json")
        elif self._adapter is not None:
            try:
                plain = self._adapter.dump_python(value, mode="json", warnings="error")
            except (PydanticSerializationError, pydantic.ValidationError, TypeError, ValueError) as exc:
                raise self._mismatch(value, exc) from exc
        else:
            plain = _plain(value, self._name)
        size = len(pack(plain))
        if size > limit:
            raise RecordTooLargeError(
                f"step {self._name!r} returned {size} bytes, over what one record may carry "
                f"(max_message_bytes leaves {limit} for a step result): store it elsewhere (a blob "
                "store, a file) and return a reference",
                size=size,
                limit=limit,
            )
        return plain

    def decode(self, plain: Any) -> Any:  # noqa: ANN401 - journaled data
        """The step's result from its journal form (live and on replay alike)."""
        try:
            if self._model is not None:
                return self._model.model_validate(plain)
            if self._adapter is not None:
                return self._adapter.validate_python(plain)
        except pydantic.ValidationError as exc:
            raise StepTypeError(
                f"step {self._name!r}: its journaled result no longer fits {_name_of(self._type)}: {exc}"
            ) from exc
        return _plain(plain, self._name)

    def _mismatch(self, value: Any, exc: BaseException | None = None) -> StepTypeError:  # noqa: ANN401
        detail = f": {exc}" if exc is not None else ""
        return StepTypeError(
            f"step {self._name!r} declares {_name_of(self._type)} but returned {type(value).__qualname__}{detail}"
        )


def _plain(value: Any, step: str) -> Any:  # noqa: ANN401 - a step's result
    """`value` as journaled plain data (tuples as lists); `StepTypeError` for anything else."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, list | tuple):
        items = [_plain(v, step) for v in value]
        return value if isinstance(value, list) and all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise _undeclared(step, k)
            out[k] = _plain(v, step)
        return out
    raise _undeclared(step, value)


def _undeclared(step: str, value: Any) -> StepTypeError:  # noqa: ANN401 - a step's result
    kind = type(value).__qualname__
    return StepTypeError(
        f"step {step!r} returned {kind} but declares no result type, so a replay could not give back "
        f"a {kind}: annotate the step function's return type (def fetch() -> {kind}: ...) or pass "
        f"result_type={kind} to ctx.run (list[{kind}] for a list)"
    )


def _name_of(result_type: Any) -> str:  # noqa: ANN401 - a type annotation
    return result_type.__qualname__ if isinstance(result_type, type) else repr(result_type)
