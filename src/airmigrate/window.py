"""Off-peak windows: when a backfill may run. Pure time arithmetic, no database, no Airflow.

`start`/`end` are local wall-clock times ("01:00", or "01:00:30" for seconds) in `timezone`; an end
before the start crosses midnight (22:00-04:00). `days` are the days a window opens on.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", description="Opens at (HH:MM)")
    end: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", description="Closes at (HH:MM)")
    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/Berlin")
    days: list[Day] = Field(default_factory=lambda: list(DAYS), description="Days it opens on")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Europe/Berlin)") from None
        return value

    def _openings(self, now: datetime):
        """(open, close) intervals around `now`, yesterday's first (a window crossing midnight)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        for offset in range(-1, 8):
            day = (local + timedelta(days=offset)).date()
            if DAYS[day.weekday()] not in self.days:
                continue
            opens = datetime.combine(day, start, zone)
            closes = datetime.combine(day + timedelta(days=1 if end <= start else 0), end, zone)
            yield opens, closes

    def contains(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(timezone.utc)
        return any(opens <= now < closes for opens, closes in self._openings(now))

    def next_open(self, now: datetime | None = None) -> datetime:
        """When the window next opens (now, if it is open), in UTC."""
        now = now or datetime.now(timezone.utc)
        for opens, closes in self._openings(now):
            if opens <= now < closes:
                return now.astimezone(timezone.utc)
            if opens > now:
                return opens.astimezone(timezone.utc)
        raise ValueError("the window never opens: `days` is empty")
