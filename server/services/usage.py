"""UsageService: totals for the caller's account, from the daily roll-ups of the usage ledger.

``usage_daily`` holds the exact sums of the ledger per account, UTC day and model (kept in the
ledger's own transactions), so a period of whole UTC days is at most (days x models) rows to read.
Costs are integers of 10^-10 USD, summed exactly, converted to a JSON number only at the end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from plutos.v1 import usage_pb2, usage_pb2_grpc
from sqlalchemy import func, select

from core.errors import echo, invalid_parameter
from server.call_state import Caller, caller
from server.runtime import Runtime
from server.store.models import UsageDaily, units_to_usd, utcnow

MAX_RANGE_DAYS = 366


def parse_date(value: str, field: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise invalid_parameter(
            field, f"'{field}' must be a date in YYYY-MM-DD format (got '{echo(value)}')."
        ) from None


def date_filter(start_date: str, end_date: str, today: date) -> tuple[date | None, date | None]:
    """The one rule of every date-filtered list (``/v1/process``, ``/v1/usage``, ``/v1/usage/daily``):
    inclusive UTC days, each ``YYYY-MM-DD`` or unset (None).

    Raises ``invalid_parameters`` with ``details.field``: a malformed date (its field); a
    ``start_date`` after today, UTC (``start_date``: nothing can lie there, and it is usually a
    mistyped year); an ``end_date`` before ``start_date`` (``end_date``). ``end_date`` may be in the
    future (the end of the current month, say)."""
    start = parse_date(start_date, "start_date") if start_date else None
    if start is not None and start > today:
        raise invalid_parameter("start_date", f"'start_date' must not be after today ({today.isoformat()}, UTC).")
    end = parse_date(end_date, "end_date") if end_date else None
    if start is not None and end is not None and end < start:
        raise invalid_parameter("end_date", "'end_date' must not be before 'start_date'.")
    return start, end


def usage_period(start_date: str, end_date: str, today: date) -> tuple[date, date]:
    """Inclusive first and last day, checked by :func:`date_filter`. Default: the current calendar
    month up to today (UTC); only ``end_date``: from the first of its month; only ``start_date``:
    up to today. A period longer than ``MAX_RANGE_DAYS`` → ``invalid_parameters`` (``end_date``)."""
    start, end = date_filter(start_date, end_date, today)
    if start is None and end is None:
        start, end = today.replace(day=1), today
    elif start is None:
        assert end is not None
        start = end.replace(day=1)
    elif end is None:
        end = max(today, start)
    if end < start:
        raise invalid_parameter("end_date", "'end_date' must not be before 'start_date'.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise invalid_parameter("end_date", f"The period may span at most {MAX_RANGE_DAYS} days.")
    return start, end


def effective_limit(who: Caller, name: str) -> int:
    plan_value = int(getattr(who.plan, name))
    own = who.limits.get(name)
    return min(plan_value, own) if own is not None else plan_value


class UsageService(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def GetUsage(self, request: usage_pb2.GetUsageRequest, context: Any) -> usage_pb2.GetUsageResponse:
        who = caller()
        first, last = usage_period(request.start_date, request.end_date, utcnow().date())
        start = datetime.combine(first, time.min, tzinfo=UTC)
        # The last second of the last day (not "the next day minus 1 s": 9999-12-31 has no next day).
        end = datetime.combine(last, time(23, 59, 59), tzinfo=UTC)
        query = (
            select(
                UsageDaily.model,
                func.sum(UsageDaily.requests),
                func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens),
                func.sum(UsageDaily.cost_units),
                func.sum(UsageDaily.cached_requests),
            )
            .where(UsageDaily.account_id == who.account_id, UsageDaily.day >= first, UsageDaily.day <= last)
            .group_by(UsageDaily.model)
            .order_by(UsageDaily.model)
        )
        async with self.runtime.sessions() as session:
            rows = (await session.execute(query)).all()
        totals = usage_pb2.UsageTotals()
        cost_units = 0
        for model, requests, tokens, units, cached in rows:
            totals.cached_requests += int(cached)
            totals.requests_by_model[model] = int(requests)
            totals.total_requests += int(requests)
            totals.total_tokens += int(tokens)
            cost_units += int(units)
        totals.total_cost = float(units_to_usd(cost_units))
        response = usage_pb2.GetUsageResponse(
            usage=totals,
            limits=usage_pb2.UsageLimits(
                requests_per_minute=effective_limit(who, "requests_per_minute"),
                requests_per_hour=effective_limit(who, "requests_per_hour"),
                requests_per_day=effective_limit(who, "requests_per_day"),
                monthly_tokens=who.plan.monthly_tokens,
            ),
        )
        response.period.start.FromDatetime(start)
        response.period.end.FromDatetime(end)
        return response

    async def GetDailyUsage(
        self, request: usage_pb2.GetDailyUsageRequest, context: Any
    ) -> usage_pb2.GetDailyUsageResponse:
        """One row per UTC day and model of the period (default: this month so far), straight
        from the roll-ups; cost by the same integer arithmetic as GetUsage."""
        who = caller()
        first, last = usage_period(request.start_date, request.end_date, utcnow().date())
        query = select(
            UsageDaily.day,
            UsageDaily.model,
            UsageDaily.requests,
            UsageDaily.prompt_tokens,
            UsageDaily.completion_tokens,
            UsageDaily.cost_units,
        ).where(UsageDaily.account_id == who.account_id, UsageDaily.day >= first, UsageDaily.day <= last)
        if request.model:
            query = query.where(UsageDaily.model == request.model)
        async with self.runtime.sessions() as session:
            rows = (await session.execute(query.order_by(UsageDaily.day, UsageDaily.model))).all()
        return usage_pb2.GetDailyUsageResponse(
            data=[
                usage_pb2.DailyUsage(
                    date=day.isoformat(),
                    model=model,
                    requests=int(requests),
                    prompt_tokens=int(prompt),
                    completion_tokens=int(completion),
                    total_tokens=int(prompt) + int(completion),
                    cost=float(units_to_usd(int(units))),
                )
                for day, model, requests, prompt, completion, units in rows
            ]
        )
