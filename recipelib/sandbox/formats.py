"""The API's formats the node agent writes and reads: times (``metav1.Time``, ``MicroTime``, the kubelet's
log stamps) and resource quantities. Pure functions, shared by the node, the scheduler, the kubelet and the
log server."""

from __future__ import annotations

import re
import time


def utc_now() -> str:
    """``metav1.Time``: RFC 3339, seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def utc_now_micro() -> str:
    """``metav1.MicroTime``: RFC 3339, microseconds (leases)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def rfc3339_nano(ns: int) -> str:
    """The kubelet's log timestamps (Go's ``time.RFC3339Nano``: trailing zeros of the fraction dropped)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{digits}" if digits else "") + "Z"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time such as ``2026-11-27T03:10:00.25Z``."""
    import calendar

    base, _, fraction = text.strip().rstrip("Z").partition(".")
    base = base.replace("+00:00", "")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9, "u": 1e-6,
             "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(value: object) -> float:
    """A Kubernetes quantity (``500m``, ``16Gi``, ``8``) as a number."""
    match = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([A-Za-z]*)", str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]
