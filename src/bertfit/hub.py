"""The Hugging Face hub, asked once and briefly: can a name load, from the hub or from the local cache?

Offline machines are common (no network, a firewall, ``HF_HUB_OFFLINE``). Left to themselves the
hub libraries learn that only after the data has been read, and then retry for half a minute.
bertfit asks first: a TCP connection to the hub's host with a short timeout, once per process,
and the local cache. This module loads nothing itself.
"""

from __future__ import annotations

import functools
import logging
import socket
from pathlib import Path

from bertfit.errors import ModelLoadError

log = logging.getLogger(__name__)

HUB_TIMEOUT = 3.0  # seconds to wait for the hub's address to answer before calling it unreachable


def check_hub_name(name: str | None, flag: str = "--model") -> bool:
    """Before any other work, make sure a hub name can load; returns whether to load it from the cache alone.

    A local folder, or None (the embedded model), needs nothing. A hub name loads from the local
    cache when the hub cannot be reached (``HF_HUB_OFFLINE``, or no answer within HUB_TIMEOUT
    seconds, asked once); when it is not cached either, this fails at once, instead of after the
    data is read and a download has retried for half a minute.
    """
    if name is None or Path(name).exists():
        return False
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repository id at all ("a b", "../x")
        raise ModelLoadError(f"{flag} {name!r} is neither a local folder nor a valid hub name; pass {flag} PATH "
                             "to a model folder") from None
    if not constants.HF_HUB_OFFLINE and hub_reachable():
        return False
    if cached:
        log.info("the Hugging Face hub is unreachable; loading %s from the local cache", name)
        return True
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"no answer from {constants.ENDPOINT}"
    raise ModelLoadError(
        f"cannot load model {name!r}: it is not a local folder, not in the local cache, and the Hugging Face hub "
        f"is unreachable ({why}); pass {flag} PATH to a downloaded model folder (or check the name)"
    )


@functools.cache
def hub_reachable() -> bool:
    """Whether the hub's host accepts a connection within HUB_TIMEOUT seconds (asked once per process)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_TIMEOUT):
            return True
    except OSError:
        return False
