"""The record codec: a msgpack envelope around pydantic payloads, with schema versions.

An envelope is a msgpack map ``{"t": type name, "v": schema version, "d": payload}``. Payloads are
pydantic models dumped in JSON mode, so they never carry code: nothing off the wire is unpickled.
Old schema versions are brought forward by upcasters, one version step at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
import pydantic

from .errors import (
    EnvelopeDecodeError,
    PayloadValidationError,
    UnknownSchemaVersionError,
    UnknownTypeError,
    UsageError,
)

M = TypeVar("M", bound=pydantic.BaseModel)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def pack(value: Any) -> bytes:
    """Encode plain data (maps, lists, str, bytes, numbers) as msgpack."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    """Decode msgpack written by `pack`; raises `EnvelopeDecodeError` on anything else."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise EnvelopeDecodeError(f"not valid msgpack: {type(exc).__name__} {exc}".rstrip()) from exc


class Codec:
    """Registry of payload types, their names and schema versions.

    Register each model once with the schema version the code writes. Reading an older version
    applies the registered upcasters in order (v1 -> v2 -> ... -> current) before validation.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[type[pydantic.BaseModel], int]] = {}
        self._by_type: dict[type[pydantic.BaseModel], tuple[str, int]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: type[M], *, name: str | None = None, version: int = 1) -> type[M]:
        """Register `model` under `name` (default: the class name) at schema `version`.

        Raises:
            UsageError: the name is taken by another model, or the version is below 1.
        """
        type_name = name or model.__name__
        if version < 1:
            raise UsageError(f"schema version of {type_name} must be >= 1, got {version}")
        known = self._by_name.get(type_name)
        if known is not None and known[0] is not model:
            raise UsageError(
                f"type name {type_name!r} is already registered for {known[0].__qualname__}; "
                "pass name=... to register it under another name"
            )
        self._by_name[type_name] = (model, version)
        self._by_type[model] = (type_name, version)
        return model

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate a function that turns a payload of `from_version` into `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (name, from_version)
            if key in self._upcasters:
                raise UsageError(f"an upcaster for {name} v{from_version} already exists")
            self._upcasters[key] = fn
            return fn

        return decorate

    def knows(self, model: type[pydantic.BaseModel]) -> bool:
        """Whether `model` is registered."""
        return model in self._by_type

    def name_of(self, model: type[pydantic.BaseModel]) -> str:
        """The registered type name of `model`."""
        try:
            return self._by_type[model][0]
        except KeyError:
            raise UsageError(f"{model.__qualname__} is not registered with this codec; register it first") from None

    def encode(self, value: pydantic.BaseModel) -> bytes:
        """Encode a registered model as envelope bytes."""
        return pack(self.encode_envelope(value))

    def encode_envelope(self, value: pydantic.BaseModel) -> dict[str, Any]:
        """The envelope map of a registered model (to embed in a larger msgpack value)."""
        name, version = self._by_type.get(type(value), (None, 0))
        if name is None:
            raise UsageError(f"{type(value).__qualname__} is not registered with this codec; register it first")
        return {"t": name, "v": version, "d": value.model_dump(mode="json")}

    def decode(self, data: bytes) -> pydantic.BaseModel:
        """Decode an envelope into its registered model, upcasting old versions.

        Raises:
            EnvelopeDecodeError: not an envelope.
            UnknownTypeError: the type name is not registered.
            UnknownSchemaVersionError: newer than the code, or no upcaster path.
            PayloadValidationError: the payload does not validate.
        """
        envelope = unpack(data)
        return self.decode_envelope(envelope)

    def decode_envelope(self, envelope: Any) -> pydantic.BaseModel:
        """Decode an already-unpacked envelope map (see `decode`)."""
        if not isinstance(envelope, dict) or not {"t", "v", "d"} <= envelope.keys():
            raise EnvelopeDecodeError("not a Tether envelope: expected a map with t, v and d")
        name, version, payload = envelope["t"], envelope["v"], envelope["d"]
        # bool is an int subclass in Python, but msgpack keeps them apart: true is no version.
        if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
            raise EnvelopeDecodeError("envelope fields t (str) and v (int) have wrong types")
        known = self._by_name.get(name)
        if known is None:
            raise UnknownTypeError(f"unknown type {name!r}", type_name=name, schema_version=version)
        model, current = known
        if version > current:
            raise UnknownSchemaVersionError(
                f"schema version {version} of {name} is newer than this code (v{current}); "
                "deploy the newer code to read it",
                type_name=name,
                schema_version=version,
            )
        while version < current:
            step = self._upcasters.get((name, version))
            if step is None:
                raise UnknownSchemaVersionError(
                    f"no upcaster from v{version} of {name} (code is at v{current}); "
                    f"register one with @codec.upcaster({name!r}, {version})",
                    type_name=name,
                    schema_version=version,
                )
            try:
                payload = step(payload)
            except Exception as exc:  # an old payload the upcaster cannot read is bad data
                raise PayloadValidationError(
                    f"upcaster from v{version} of {name} failed on the payload: {exc!r}",
                    type_name=name,
                    schema_version=version,
                ) from exc
            version += 1
        try:
            return model.model_validate(payload)
        except pydantic.ValidationError as exc:
            raise PayloadValidationError(
                f"payload of {name} v{version} failed validation: {exc.errors(include_url=False)}",
                type_name=name,
                schema_version=version,
            ) from exc
