"""What ``/openapi.json`` says of the request bodies the endpoints read by hand (FastAPI cannot see them in
their signatures) and of the error answers, as :mod:`kgzsl.serve.app` sends them."""

from __future__ import annotations

from typing import Any

__all__ = ["PREDICT_BODY", "PREDICT_ANSWERS", "EXPLAIN_BODY", "EXPLAIN_ANSWERS", "ERRORS"]

_ERROR = {"type": "object", "required": ["detail", "kind", "error"],
          "properties": {"detail": {"type": "string", "description": "what is wrong, and the fix"},
                         "kind": {"type": "string", "description": "the error's class, e.g. LabelError"},
                         "error": {"type": "string", "description": "the same as detail (Hugging Face clients)"}}}
ERRORS = {code: {"description": why, "content": {"application/json": {"schema": _ERROR}}} for code, why in (
    (400, "bad input: the image, a parameter (or any query parameter), an unknown label (its close matches named)"),
    (403, "a POST from a web page of another origin (kgzsl serve --cors-origin allows one)"),
    (413, "the body exceeds kgzsl serve --max-upload-mb"),
    (415, "another content type than JSON, a multipart form or an image"),
    (422, "a bad query parameter"))}
_BASE64 = {"type": "string", "description": "the image file's bytes, base64-encoded, or a data: URL"}


def _image_body(parameters: dict[str, Any], raw: bool) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint taking an image and ``parameters`` (name → schema)."""
    form = {name: {"type": "string"} if schema.get("type") == "array" else schema for name, schema in parameters.items()}
    content = {
        "application/json": {"schema": {
            "type": "object", "required": ["inputs"], "additionalProperties": False,
            "properties": {"inputs": _BASE64, "options": {"type": "object", "description": "ignored"},
                           "parameters": {"type": "object", "properties": parameters, "additionalProperties": False}}}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary"}, **form}}}}
    if raw:  # Hugging Face's image-classification clients: the file itself, no parameters
        for kind in ("image/*", "application/octet-stream"):
            content[kind] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "content": content}


_PREDICTION = {"type": "object", "properties": {name: {"type": kind} for name, kind in (
    ("label", "string"), ("wnid", "string"), ("synset", "string"), ("score", "number"))}}
PREDICT_BODY = {"requestBody": _image_body({
    "candidate_labels": {"type": "array", "items": {"type": "string"},
                         "description": "words, synset names or wnids; in a form comma-separated or a JSON list; "
                                        "left out: every class"},
    "top_k": {"type": "integer", "minimum": 1}, "abstain": {"type": "boolean"}, "adapt": {"type": "boolean"}},
    raw=True)}
PREDICT_ANSWERS = {200: {"description": "the predictions, best first; with abstain the record",
                          "content": {"application/json": {"schema": {"oneOf": [
                              {"type": "array", "items": _PREDICTION},
                              {"type": "object", "properties": {
                                  "predictions": {"type": "array", "items": _PREDICTION},
                                  "abstained": {"type": "boolean"}, "max_logit": {"type": "number"},
                                  "threshold": {"type": "number"}}}]}}}},
                    **{code: answer for code, answer in ERRORS.items() if code != 422}}  # no query parameters
EXPLAIN_BODY = {"requestBody": _image_body({"label": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1}},
                                            raw=False)}
EXPLAIN_ANSWERS = {200: {"description": "the explanation, or with ?format=png its drawing",
                          "content": {"application/json": {"schema": {"type": "object"}},
                                      "image/png": {"schema": {"type": "string", "format": "binary"}}}}, **ERRORS}
