"""Alerts: every alert is a row in ``alerts``; repeats of the same ``dedup_key`` are suppressed.

Delivery (e-mail, webhook) is done by the caller; this module records what was delivered where,
so a retry re-sends only to the channels that failed.
"""
from __future__ import annotations

import dataclasses
import json

import sqlalchemy as sa


@dataclasses.dataclass(frozen=True)
class Alert:
    id: int
    dedup_key: str
    title: str
    payload: dict
    deliveries: dict
    new: bool

    def pending(self, channels: list[str]) -> list[str]:
        """Channels among ``channels`` that have not yet received this alert."""
        return [c for c in channels if not self.deliveries.get(c, {}).get("ok")]


def raise_alert(engine: sa.Engine, kind: str, dedup_key: str, title: str, payload: dict,
                tier: str | None = None) -> Alert:
    """Record an alert once per ``dedup_key``; a repeat only increments ``repeats`` (new=False)."""
    with engine.begin() as conn:
        row = conn.execute(sa.text(
            "INSERT INTO alerts (kind, dedup_key, tier, title, payload) "
            "VALUES (:k, :key, :t, :title, CAST(:p AS jsonb)) "
            "ON CONFLICT (dedup_key) DO UPDATE SET repeats = alerts.repeats + 1 "
            "RETURNING id, title, payload, deliveries, (xmax = 0) AS inserted"),
            {"k": kind, "key": dedup_key, "t": tier, "title": title, "p": json.dumps(payload, default=str)}).one()
    return Alert(row.id, dedup_key, row.title, row.payload, row.deliveries, bool(row.inserted))


def record_delivery(engine: sa.Engine, alert_id: int, channel: str, ok: bool, detail: str) -> None:
    """Store the outcome of one delivery attempt and refresh the alert's status."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE alerts SET deliveries = deliveries || jsonb_build_object(CAST(:c AS text), "
            " jsonb_build_object('ok', CAST(:ok AS boolean), 'detail', CAST(:d AS text), 'at', now())) "
            "WHERE id = :i"), {"c": channel, "ok": ok, "d": detail[:2000], "i": alert_id})
        conn.execute(sa.text(
            "UPDATE alerts SET status = CASE "
            " WHEN EXISTS (SELECT 1 FROM jsonb_each(deliveries) e WHERE NOT (e.value ->> 'ok')::boolean) "
            " THEN 'failed' ELSE 'delivered' END WHERE id = :i"), {"i": alert_id})


def mark_recorded_only(engine: sa.Engine, alert_id: int) -> None:
    """No delivery channel is configured: the alert lives in the table only."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alerts SET status = 'recorded' WHERE id = :i AND deliveries = '{}'"),
                     {"i": alert_id})
