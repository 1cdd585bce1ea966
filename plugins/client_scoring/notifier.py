"""The alert notifier: records every alert in ``alerts`` and delivers it by e-mail and/or webhook."""
from __future__ import annotations

import html
import json
import logging

from airflow.sdk import BaseNotifier

from client_scoring.wiring import SMTP_CONN_ID, WEBHOOK_CONN_ID

log = logging.getLogger(__name__)


class AlertDeliveryError(RuntimeError):
    """At least one configured channel did not accept the alert (it is recorded in ``alerts``)."""


class ClientScoringNotifier(BaseNotifier):
    """Record an alert once per ``dedup_key`` and deliver it to the configured channels.

    E-mail goes through the SMTP connection ``client_scoring_smtp`` (recipients in its extra
    ``to``); the webhook POSTs Slack-compatible JSON (``text`` plus the structured ``alert``) to the
    HTTP connection ``client_scoring_webhook`` (its schema is ``http``/``https``, the path in its
    extra ``endpoint``). A channel whose connection is not defined is not
    used. Repeats of a delivered alert are suppressed; a failed delivery is recorded and raised.

    Args:
        kind: ``drift``, ``task_failure`` or ``test``.
        title: Alert title; defaults to one built from the failing task.
        payload: JSON-serialisable details; defaults to the failing task's identity and error.
        dedup_key: Alerts with the same key are one alert; defaults to the failing task instance (one
            per map index of a mapped task, see ``task_failure_alert``).
        tier: Model tier concerned, if any.
    """

    template_fields = ("title", "payload", "dedup_key")

    def __init__(self, kind: str = "task_failure", title: str | None = None, payload: dict | None = None,
                 dedup_key: str | None = None, tier: str | None = None,
                 smtp_conn_id: str = SMTP_CONN_ID, webhook_conn_id: str = WEBHOOK_CONN_ID):
        super().__init__()
        self.kind = kind
        self.title = title
        self.payload = payload
        self.dedup_key = dedup_key
        self.tier = tier
        self.smtp_conn_id = smtp_conn_id
        self.webhook_conn_id = webhook_conn_id

    def _from_context(self, context) -> tuple[str, dict, str]:
        ti = context.get("ti") or context.get("task_instance")
        error = context.get("exception")
        return task_failure_alert(
            dag_id=getattr(ti, "dag_id", None) or context["dag"].dag_id, task_id=getattr(ti, "task_id", "?"),
            run_id=context.get("run_id") or getattr(ti, "run_id", "?"), map_index=getattr(ti, "map_index", -1),
            try_number=getattr(ti, "try_number", None), error=repr(error) if error else None)

    def notify(self, context) -> None:
        from mlcore.alerts import mark_recorded_only, raise_alert, record_delivery
        from client_scoring.wiring import engine

        title, payload, key = self.title, self.payload, self.dedup_key
        if title is None or payload is None or key is None:
            t, p, k = self._from_context(context)
            title, payload, key = title or t, payload or p, key or k
        eng = engine()
        alert = raise_alert(eng, self.kind, key, title, payload, self.tier)
        channels = [name for name, conn_id in (("email", self.smtp_conn_id), ("webhook", self.webhook_conn_id))
                    if _has_connection(conn_id)]
        pending = alert.pending(channels)
        if not alert.new and not pending:
            log.info("alert %s already delivered; repeat suppressed", key)
            return
        if not channels:
            mark_recorded_only(eng, alert.id)
            log.warning("alert %s recorded; no delivery channel is configured", key)
            return
        failures = []
        for channel in pending:
            try:
                detail = (self._email if channel == "email" else self._webhook)(title, payload, alert.id)
                record_delivery(eng, alert.id, channel, True, detail)
            except Exception as exc:  # recorded, then raised below
                record_delivery(eng, alert.id, channel, False, repr(exc))
                failures.append(f"{channel}: {exc!r}")
        if failures:
            raise AlertDeliveryError(f"alert {alert.id} ({key}) was recorded but not delivered to "
                                     + "; ".join(failures))

    def _email(self, title: str, payload: dict, alert_id: int) -> str:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            to = hook.conn.extra_dejson.get("to")
            if not to:
                raise ValueError(f"connection {self.smtp_conn_id} has no 'to' in its extra")
            body = f"<h3>{html.escape(title)}</h3><pre>{html.escape(json.dumps(payload, indent=2, default=str))}</pre>"
            hook.send_email_smtp(to=to, subject=f"[client-scoring] {title}", html_content=body,
                                 custom_headers={"X-Client-Scoring-Alert": str(alert_id)})
        return f"sent to {to}"

    def _webhook(self, title: str, payload: dict, alert_id: int) -> str:
        from airflow.providers.http.hooks.http import HttpHook

        body = {"text": f":rotating_light: {title}", "alert": {"id": alert_id, "title": title, **payload}}
        hook = HttpHook(method="POST", http_conn_id=self.webhook_conn_id)
        endpoint = hook.get_connection(self.webhook_conn_id).extra_dejson.get("endpoint")
        response = hook.run(endpoint=endpoint, data=json.dumps(body, default=str),
                            headers={"Content-Type": "application/json"})
        return f"HTTP {response.status_code}"


def task_failure_alert(dag_id: str, task_id: str, run_id: str, map_index: int | None = -1,
                       try_number: int | None = None, error: str | None = None) -> tuple[str, dict, str]:
    """Title, payload and dedup key of the alert for one failed task instance.

    Each mapped instance (``map_index`` >= 0) is its own alert: two failed partitions of one run are
    two alerts. An unmapped task (``map_index`` -1 or None) keeps the key it always had,
    ``task_failure:{dag_id}:{task_id}:{run_id}``, so alerts recorded before mapping was told apart
    still suppress their repeats.

    Example:
        >>> task_failure_alert("nightly_elite_scoring", "score_partition", "r1", 2)[2]
        'task_failure:nightly_elite_scoring:score_partition:r1:2'
    """
    mapped = map_index is not None and map_index >= 0
    where = f"{dag_id}.{task_id}[{map_index}]" if mapped else f"{dag_id}.{task_id}"
    payload = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "map_index": map_index if mapped else -1,
               "try_number": try_number, "error": error}
    key = f"task_failure:{dag_id}:{task_id}:{run_id}" + (f":{map_index}" if mapped else "")
    return f"Task failed: {where} ({run_id})", payload, key


def _has_connection(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
        return True
    except AirflowNotFoundException:
        return False
