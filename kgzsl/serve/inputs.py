"""What a request may carry, read and checked before any model work: the body, the image, the parameters.

Two request shapes are accepted for an image:

- ``application/json`` in the shape of the Hugging Face Inference API for zero-shot image
  classification: ``{"inputs": "<base64 image>", "parameters": {"candidate_labels": [...], "top_k": 5}}``
  (a ``data:image/...;base64,`` prefix is allowed);
- ``multipart/form-data``: an ``image`` file and the parameters as form fields
  (``candidate_labels`` comma-separated);
- the image file's bytes as the body (``image/jpeg``, ``image/png``..., or
  ``application/octet-stream``), as Hugging Face's ``image-classification`` clients send it: no
  parameters, so every class is ranked.

The Inference API's top-level ``"options"`` (``wait_for_model``, ``use_cache``) are accepted and have
nothing to do here (the model is always loaded, nothing is cached between requests).

A key the request shape does not take (a form field, a top-level JSON key, a key of
``"parameters"``) is refused, naming the close match: ``candidate_label`` is a typo, never silently
a ranking over every class.

Everything stays in memory: the body is read up to :attr:`ServeLimits.max_body_bytes` (a larger one
is refused while it arrives) and a multipart upload is never spooled to a temporary file. Every
refusal is a :class:`RequestError` carrying its HTTP status.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

from kgzsl.errors import InputError, MissingPackageError
from kgzsl.vision.images import decode_base64, is_url

try:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import create_form_parser, parse_options_header
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingPackageError("serving needs python-multipart (with FastAPI and uvicorn): "
                              "pip install 'kgzsl[serve]'") from exc

__all__ = ["ServeLimits", "RequestError", "read_body", "parse_image_request", "candidate_labels", "top_k",
           "flag", "one_label"]

JSON_SHAPE = '{"inputs": "<base64 image>", "parameters": {...}}'

#: the top-level keys of a JSON request ("options": the Inference API's wait_for_model / use_cache, ignored)
JSON_KEYS = ("inputs", "parameters", "options")

#: parameters of other zero-shot APIs that kgzsl has no use for, and why (refused, not ignored)
NOT_USED = {"hypothesis_template": "kgzsl scores graph nodes, not text prompts: leave it out"}


@dataclass(frozen=True)
class ServeLimits:
    """What the server accepts from one request.

    Attributes:
        max_body_bytes: Largest request body (the image, base64 included, and the parameters).
        max_pixels: Largest image, in pixels claimed by its header (checked before decoding).
        max_labels: Most candidate labels in one request.
        max_label_chars: Longest candidate label.
    """

    max_body_bytes: int = 16 * 2**20
    max_pixels: int = 40_000_000
    max_labels: int = 100
    max_label_chars: int = 100

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_pixels", "max_labels", "max_label_chars"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


class RequestError(InputError):
    """A request the server refuses before any model work; ``status`` is the HTTP status to answer.

    Args:
        message: What is wrong and how to fix it.
        status: 400 (bad content), 413 (too large) or 415 (wrong content type).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes.

    Args:
        headers: The request headers (``Content-Length`` is checked first when given).
        chunks: The body as it arrives (``Request.stream()``).
        limit: Most bytes accepted.
    """
    too_large = f"the request body exceeds the server's limit of {limit:,} bytes; send a smaller image " \
                "(the server's --max-upload-mb)"
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise RequestError(too_large, 413)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestError(too_large, 413)
        parts.append(chunk)
    return b"".join(parts)


def parse_image_request(content_type: str | None, body: bytes, accepted: Sequence[str]
                        ) -> tuple[bytes, dict[str, Any]]:
    """The encoded image and the parameters of a JSON or multipart request.

    Args:
        content_type: The request's ``Content-Type`` header.
        body: The whole body (:func:`read_body`).
        accepted: The parameters the endpoint takes (``candidate_labels``, ``top_k``...).

    Returns:
        ``(image bytes, parameters)``; form fields are strings (``top_k`` an int when it is a decimal
        number), JSON parameters keep their types.

    Raises:
        RequestError: For another content type (415), bad JSON, bad base64, a missing image, a
            malformed form, or a field, JSON key or parameter not in ``accepted`` (400).
    """
    kind, options = parse_options_header(content_type or "")
    if kind == b"application/json":
        return _from_json(body, accepted)
    if kind == b"multipart/form-data":
        return _from_form(content_type or "", options, body, accepted)
    if kind.startswith(b"image/") or kind == b"application/octet-stream":  # the image file itself
        if not body:
            raise RequestError("the body is empty: send the image file's bytes")
        return body, {}
    given = f"unsupported content type {content_type!r}" if content_type else \
        ("a request without a body" if not body else "a body with no content type (Content-Type header)")
    raise RequestError(f"{given}: send application/json ({JSON_SHAPE}), "
                       "multipart/form-data (an image file and form fields) or the image file itself (image/...)", 415)


def _refuse_unknown(given: Iterable[str], accepted: Sequence[str], what: str, where: str = "",
                    misplaced: Sequence[str] = ()) -> None:
    """Refuse the names in ``given`` that are not in ``accepted``, each with its close match if any.

    Args:
        given: The names the request carries.
        accepted: The names it may carry.
        what: What a name is, for the message (``"form field"``, ``"key"``).
        where: Where it was found, for the message (``" in the JSON body"``).
        misplaced: Names that are valid elsewhere: those of ``"parameters"``, at the top of a JSON body.

    Raises:
        RequestError: Naming the unknown names and listing the accepted ones.
    """
    unknown = [name for name in given if name not in accepted]
    if not unknown:
        return
    named = []
    for name in unknown[:5]:
        shown = repr(name if len(name) <= 60 else name[:60] + "...")
        close = difflib.get_close_matches(name, accepted, n=1)
        if name in NOT_USED:
            shown += f" ({NOT_USED[name]})"
        elif name in misplaced:
            shown += " (a parameter: put it under \"parameters\")"
        elif close:
            shown += f" (did you mean {close[0]}?)"
        named.append(shown)
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    plural = "s" if len(unknown) > 1 else ""
    raise RequestError(f"unknown {what}{plural}{where}: {', '.join(named)}{more}; "
                       f"accepted: {', '.join(accepted)}")


def _from_json(body: bytes, accepted: Sequence[str]) -> tuple[bytes, dict[str, Any]]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON ({exc}); send {JSON_SHAPE}") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise RequestError(f"the body is not valid JSON for this API (nested too deeply); send {JSON_SHAPE}") \
            from None
    if isinstance(payload, dict):  # first: {"input": ...} is a typo, not a missing image
        _refuse_unknown(payload, JSON_KEYS, "key", " in the JSON body", misplaced=accepted)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
        raise RequestError(f"the JSON body must be an object with the image as a base64 string in \"inputs\": "
                           f"{JSON_SHAPE}")
    if not isinstance(payload.get("options", {}), dict):
        raise RequestError(f"\"options\" must be a JSON object, got {type(payload['options']).__name__}")
    parameters = payload.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise RequestError(f"\"parameters\" must be a JSON object, got {type(parameters).__name__}")
    _refuse_unknown(parameters, accepted, "key", " in \"parameters\"")
    text = payload["inputs"]
    if is_url(text):  # the Inference API takes URLs; this server fetches none
        raise RequestError("\"inputs\" is a URL: this server fetches nothing from the network; send the image "
                           "file's bytes base64-encoded")
    try:
        image = decode_base64(text)  # or a data URL: data:image/png;base64,....
    except ValueError as exc:
        raise RequestError(f"\"inputs\" is not valid base64 ({exc}); send the image file's bytes base64-encoded") \
            from None
    return image, parameters


def _from_form(content_type: str, options: dict[bytes, bytes], body: bytes, accepted: Sequence[str]
               ) -> tuple[bytes, dict[str, Any]]:
    if not options.get(b"boundary"):
        raise RequestError("the multipart/form-data content type has no boundary; let the client build the form")
    parts: dict[str, bytes] = {}
    repeated: list[str] = []

    def keep(name: bytes | None, data: bytes) -> None:
        key = (name or b"").decode("utf-8", "replace")
        if key in parts:
            repeated.append(key)
        parts[key] = data

    def on_field(field: Any) -> None:
        keep(field.field_name, field.value or b"")

    def on_file(file: Any) -> None:
        file.file_object.seek(0)
        keep(file.field_name, file.file_object.read())

    # files stay in memory whatever their size: the body is already bounded by max_body_bytes
    parser = create_form_parser({"Content-Type": content_type.encode("latin-1", "replace")}, on_field, on_file,
                                config={"MAX_MEMORY_FILE_SIZE": float("inf")})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise RequestError(f"malformed multipart/form-data body ({exc}); let the client build the form") from None
    if repeated:
        raise RequestError(f"form field(s) {sorted(set(repeated))} given more than once; send each once")
    if "image" not in parts:
        raise RequestError("the form has no \"image\" field: send the image file as image=@photo.jpg")
    image = parts.pop("image")
    _refuse_unknown(parts, ("image", *accepted), "form field")
    try:
        fields: dict[str, Any] = {name: value.decode("utf-8") for name, value in parts.items()}
    except UnicodeDecodeError:
        raise RequestError("form fields other than \"image\" must be UTF-8 text") from None
    if "top_k" in fields:  # a form's number is text; JSON's must be a number
        text = fields["top_k"].strip()
        if not (text.isascii() and text.isdigit()):
            raise RequestError(f"the form field top_k must be a positive integer, got {fields['top_k'][:40]!r}")
        fields["top_k"] = int(text)
    return image, fields


def candidate_labels(value: Any, limits: ServeLimits) -> list[str] | None:
    """The candidate labels of a request: None (every class) when absent.

    Accepts a list of strings, one comma-separated string (form fields), or a form field holding a
    JSON list of strings (``["cat", "dog"]``, as a JSON body would).

    Raises:
        RequestError: For another type, an empty list, too many labels or too long a label.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        try:
            value = json.loads(value)
        except ValueError:
            raise RequestError(f"candidate_labels looks like a JSON list but is not one ({value[:60]!r}); give a "
                               "comma-separated list (cat,dog) or a JSON list of strings ([\"cat\", \"dog\"])"
                               ) from None
    if isinstance(value, str):
        labels = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        labels = list(value)
    else:
        bad = [f"item {i} is {_describe(v)}" for i, v in enumerate(value) if not isinstance(v, str)] \
            if isinstance(value, list) else [f"got {_describe(value)}"]
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise RequestError("candidate_labels must be a list of strings (or one comma-separated string): "
                           f"{', '.join(bad[:5])}{more}")
    labels = [label.strip() for label in labels]
    if labels in ([], [""]):
        raise RequestError("candidate_labels is empty: give at least one label, or leave it out to score every "
                           "class of the graph")
    if len(labels) > limits.max_labels:
        raise RequestError(f"{len(labels)} candidate labels: the server takes at most {limits.max_labels} per "
                           "request (leave them out to score every class)")
    long = [label[:40] + "..." for label in labels if len(label) > limits.max_label_chars]
    if long:
        raise RequestError(f"labels longer than {limits.max_label_chars} characters: {long}")
    return labels


def _describe(value: Any) -> str:
    """A JSON value for a message: its type and (shortened) value, ``null`` for None."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:40] + '...'}"


def top_k(value: Any) -> int | None:
    """A positive integer, as the Python API takes it (not a bool, not a string: a form's decimal text
    is already an int, see :func:`parse_image_request`); None when absent, which ``predict`` reads
    as every candidate of a label list and the 5 best without one.

    Raises:
        RequestError: For anything else.
    """
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        hint = " (a JSON number, not a string)" if isinstance(value, str) else ""
        raise RequestError(f"top_k must be a positive integer{hint}, got {_describe(value)}")
    return value


def flag(name: str, value: Any) -> bool:
    """A boolean parameter: JSON true/false (or 1/0), or the form texts true/false/1/0/on/off/yes/no; False when absent.

    Raises:
        RequestError: For anything else.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):  # JSON 1 / 0, as the form's "1" / "0"
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no", ""):
        return False
    raise RequestError(f"{name} must be true or false, got {value!r}")


def one_label(value: Any, limits: ServeLimits) -> str:
    """The single label of an explanation request.

    Raises:
        RequestError: If it is missing, not a string, empty or too long.
    """
    if not isinstance(value, str) or not value.strip():
        raise RequestError("give the label to explain as \"label\" (a word, synset name or wnid), got "
                           + ("none" if value is None else _describe(value)))
    if len(value) > limits.max_label_chars:
        raise RequestError(f"the label is longer than {limits.max_label_chars} characters")
    if "," in value:
        raise RequestError(f"explain takes one label, got {value!r}; give a single word, synset name or wnid")
    return value.strip()
