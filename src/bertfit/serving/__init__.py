"""``bertfit serve``: a model over HTTP.

- ``app``: the FastAPI app and its server: request checks, pages, worker processes.
- ``batcher``: concurrent requests' texts gathered into small batches.
- ``http_protocol``: the HTTP guards (header and body size and deadlines).
- ``docs_page``: the ``/docs`` page rendered from the OpenAPI schema (works offline).

Builds on the core alone (the model and its backends).
"""
