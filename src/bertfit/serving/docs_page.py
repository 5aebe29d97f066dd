"""The ``/docs`` page of ``bertfit serve``: the server's OpenAPI schema as one plain HTML page, rendered on the server.

FastAPI's own ``/docs`` (Swagger UI) loads its JavaScript and CSS from a CDN, so it is blank on a
machine without internet. This page has no script, no stylesheet link and no external URL: every
endpoint with its method and summary, the fields of its request body (type, required, description)
and its response codes, and a link to the full schema at ``/openapi.json``. It only reads the schema
dict (``app.openapi()``); it does not import FastAPI, and it is no way to send a request (``/`` is).
"""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
h2 { margin-top: 2rem; font-size: 1.1rem; }
.method { display: inline-block; min-width: 3.5rem; font: bold 0.85rem monospace; color: #fff; background: #3b6ea5;
          border-radius: 3px; padding: 0.1rem 0.4rem; text-align: center; }
.method.post { background: #2e7d4f; }
code, .type { font-family: ui-monospace, monospace; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { text-align: left; padding: 0.25rem 0.8rem 0.25rem 0; vertical-align: top; border-bottom: 1px solid #ddd; }
"""


def render(openapi: dict[str, Any]) -> str:
    """The page for an OpenAPI 3 schema as FastAPI writes it (paths, then components/schemas for $refs)."""
    info = openapi.get("info", {})
    schemas = openapi.get("components", {}).get("schemas", {})
    sections = [_operation(path, method, operation, schemas)
                for path, methods in openapi.get("paths", {}).items()
                for method, operation in methods.items()]
    title = _text(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n<p>{_text(info.get('description', ''))}</p>\n"
            '<p>The full schema: <a href="openapi.json">/openapi.json</a>. Try texts by hand: '
            '<a href="./">the page at /</a>.</p>\n' + "\n".join(sections) + "\n</body></html>\n")


def _operation(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> str:
    parts = [f'<h2><span class="method {_text(method)}">{_text(method.upper())}</span> <code>{_text(path)}</code>'
             f" {_text(operation.get('summary', ''))}</h2>"]
    if operation.get("description"):
        parts.append(f"<p>{_text(operation['description'])}</p>")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body is not None:
        parts.append("<p>Request body (JSON):</p>" + _fields(_resolve(body, schemas), schemas))
    rows = "".join(f"<tr><td><code>{_text(code)}</code></td><td>{_text(response.get('description', ''))}</td>"
                   f"<td class=\"type\">{_text(_shape(response, schemas))}</td></tr>"
                   for code, response in operation.get("responses", {}).items())
    parts.append(f"<p>Responses:</p><table><tr><th>status</th><th>meaning</th><th>body</th></tr>{rows}</table>")
    return "\n".join(parts)


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(f"<tr><td><code>{_text(name)}</code></td><td class=\"type\">{_text(_type(field, schemas))}</td>"
                   f"<td>{'required' if name in required else 'optional'}</td>"
                   f"<td>{_text(field.get('description', ''))}</td></tr>"
                   for name, field in schema.get("properties", {}).items())
    return f"<table><tr><th>field</th><th>type</th><th></th><th>meaning</th></tr>{rows}</table>"


def _shape(response: dict[str, Any], schemas: dict[str, Any]) -> str:
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return ""
    fields = _resolve(schema, schemas).get("properties", {})
    return ", ".join(f"{name}: {_type(field, schemas)}" for name, field in fields.items()) or "JSON"


def _type(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A field's type in a few words: ``array of string``, ``number or null``, ``object``."""
    if "$ref" in schema:
        return _type(_resolve(schema, schemas), schemas)
    if "anyOf" in schema:
        return " or ".join(_type(option, schemas) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}), schemas)}"
    return str(schema.get("type", "any"))


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else schema


def _text(value: Any) -> str:
    return html.escape(str(value))
