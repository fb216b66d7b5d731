"""Hugging Face hub cache checks that never wait on the network.

open_clip and transformers both download through huggingface_hub, which retries a refused or
dropped connection five times with backoff (about 23 s per file, several files per model). So
before handing a download to a library we (1) look in the hub cache, and (2) if the weights are
not there, probe the hub once with a short timeout and no retries. A machine without network
then fails in well under a second (refused) or a few seconds (dropped), never minutes.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable

PROBE_TIMEOUT_S = 5.0


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) was set when huggingface_hub loaded."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_hub_file(repo_id: str, filenames: Iterable[str]) -> str | None:
    """The first of `filenames` present in the local hub cache for `repo_id`, else None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):  # the other results mean "not cached" / "known missing"
            return path
    return None


def hub_unreachable_reason(repo_id: str, filename: str) -> str | None:
    """Probe the hub for one file, once, with a short timeout.

    Args:
        repo_id: the hub repository, e.g. "facebook/dinov2-small".
        filename: a file in it.

    Returns:
        None when the hub answers (any HTTP status will do: the network works and the library's
        own download reports what it finds), else a short reason for the error message.
    """
    if hub_offline():
        return "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set)"
    from huggingface_hub import hf_hub_url

    return url_unreachable_reason(hf_hub_url(repo_id, filename))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer: the host is up. Following it would only add latency.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def url_unreachable_reason(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `url`'s server answers a HEAD request within `timeout`, else why not."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, method="HEAD")
    try:
        with opener.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as err:  # refused, DNS failure, timeout
        reason = getattr(err, "reason", err)
        return f"cannot reach {url.split('/', 3)[2] if '//' in url else url} ({reason})"
