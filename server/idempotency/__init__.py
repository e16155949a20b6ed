"""Idempotency keys (Stripe's semantics) for every RPC marked ``option (plutos.v1.idempotent)``.

A call with an ``idempotency-key`` (REST: the ``Idempotency-Key`` header) first *claims* the key for
its account in a store shared by every replica. The claim is one atomic step: Redis ``SET NX`` when
``redis_url`` is set, otherwise the primary key of the ``idempotency_keys`` table (so it also holds
across a restart; the claim and the answer are statements in the group-commit writer's
transactions, the answer in the one that stores the call's record). Then:

* claimed: the call runs; its answer (every message of a stream, or a 4xx error) is stored under the
  key for ``idempotency_ttl_seconds``. A 5xx, 429 or a call cut short releases the key, so a retry runs;
* the key holds a finished answer for the same request: it is replayed, without running or billing,
  with ``idempotent-replayed: true`` metadata;
* the same key with another request: ``idempotency_key_reused`` (422);
* the first call is still running: ``idempotency_in_progress`` (409, ``Retry-After``).

A claim whose holder died (a crashed replica) is taken over after ``idempotency_lease_seconds``.
"""

from server.idempotency.store import Claim, IdempotencyStore, Outcome, create_idempotency_store

__all__ = [
    "Claim",
    "IdempotencyStore",
    "Outcome",
    "create_idempotency_store",
]
