"""A torchrun peer's failure (a dead or timed-out process) told in one line, not a C++ stack."""

from __future__ import annotations

import os


def is_peer_failure(exc: Exception) -> bool:
    """A torch.distributed error in a torchrun job (a dead or timed-out peer)."""
    if "WORLD_SIZE" not in os.environ:
        return False
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", ())
    return isinstance(exc, dist_error) or peer_failure_message(str(exc))


_PEER_FAILURE = ("connection closed by peer", "connection reset", "timed out")


def peer_failure_message(text: str) -> bool:
    """Whether ``text`` is what gloo says when another process died or hung; case-insensitive,
    as gloo writes both "timed out" and "Timed out" (a stopped peer gives the latter)."""
    lowered = text.lower()
    return any(key in lowered for key in _PEER_FAILURE)


def peer_failure_line(exc: BaseException) -> str:
    """The one line printed when a peer failed: torch's message carries a C++ stack after
    its first line, which is dropped."""
    lines = str(exc).strip().splitlines()
    first = " ".join(lines[0].split())[:200] if lines else ""
    return (
        "error: another training process failed or was killed, so this one stopped "
        f"({type(exc).__name__}: {first})"
    )
