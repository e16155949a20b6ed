"""Process resources the gateway sizes for itself at start-up.

Every open stream holds two sockets in the gateway (the client's connection and the upstream's),
and the usual soft limit on open files (1,024 on most Linux distributions) caps a process at a few
hundred streams, far below what the event loop can carry. ``plutos serve`` raises the soft limit to
the hard one (which any process may do without privileges) before it starts its workers, which
inherit it.
"""

from __future__ import annotations

import resource

# Linux refuses soft limits above fs.nr_open (1,048,576 by default), RLIM_INFINITY included.
MAX_OPEN_FILES = 1 << 20


def raise_open_files_limit(wanted: int = MAX_OPEN_FILES) -> tuple[int, int] | None:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted``, at most to the hard limit.

    Returns ``(old soft limit, new soft limit)`` when it changed, ``None`` when it was already as
    high as allowed (or the system refused: the process then keeps its limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return None
    return soft, target
