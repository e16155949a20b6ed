"""Running a program as the tests' own subprocess (the SDKs' and the reference's examples under
Node and Go, curl, grpcurl, the CLI): its exit code and output, bounded in time."""

from __future__ import annotations

import asyncio
import os


async def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: str | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` with this process's environment plus ``env``; (exit code, stdout, stderr).
    Raises TimeoutError (after killing it) when it runs longer than ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()
