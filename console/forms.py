"""Action forms read from a request: URL-encoded fields only, size-bounded (no multipart)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from eventstore.errors import UsageError

__all__ = ["MAX_FORM_BYTES", "read_form"]

MAX_FORM_BYTES = 256 * 1024
"""Largest action form accepted (a replacement payload fits; an upload does not)."""


async def read_form(request: Request) -> FormData:
    """The fields of an ``application/x-www-form-urlencoded`` POST.

    Raises:
        UsageError: a body of another content type, a body over `MAX_FORM_BYTES`, or one that is not UTF-8.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise UsageError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    if not body:
        return FormData()
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise UsageError(f"actions take a URL-encoded form, not {kind or 'no content type'}")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise UsageError("the form is not UTF-8") from None
    fields: list[tuple[str, str | UploadFile]] = list(parse_qsl(text, keep_blank_values=True, max_num_fields=200))
    return FormData(fields)
