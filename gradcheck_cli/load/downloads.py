"""A constructor that tried to download something (pretrained weights) without a network: recognise
the error and say how to build the model offline. Torch-free."""

from __future__ import annotations

import inspect

_NETWORK_ERRORS = {
    "URLError",
    "HTTPError",
    "ConnectionError",
    "gaierror",
    "timeout",
    "TimeoutError",
    "SSLError",
    "MaxRetryError",
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
}
DOWNLOAD_KEYWORDS = ("pretrained", "weights", "pretrained_backbone", "weights_backbone", "download")


def is_network_error(exc: BaseException) -> bool:
    """A constructor that tried to reach the network (a pretrained download) and could not."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in _NETWORK_ERRORS for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def offline_hint(factory: object) -> str:
    """How to build without the download: the constructor's own keyword when it has one."""
    try:
        params = inspect.signature(factory).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    keyword = next((k for k in DOWNLOAD_KEYWORDS if k in params), None)
    value = "null" if keyword and keyword.startswith("weights") else "false"
    switch = f"--init {keyword}={value}" if keyword else "a constructor argument that skips the download"
    return (
        "the constructor tried to download something (pretrained weights?) and the network is not "
        f"reachable: build the model without it ({switch}), or run once online so the file is cached"
    )
