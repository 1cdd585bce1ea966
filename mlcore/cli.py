"""The ``mlcore`` command line: db, ingest, synth, train, score, models, promote, drift, check-secrets, demo."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from mlcore.config import Settings
from mlcore.exceptions import ArtifactIntegrityError, ConfigError, InputDataError, LockTimeoutError, ModelNotFoundError

EXIT_USER_ERROR = 2
#: The environment, not the input: the database cannot be reached, or a lock was not released in time.
EXIT_ENVIRONMENT = 3


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date like 2025-06-30, got {text!r}") from None


def _engine(settings: Settings, upgrade: bool = True):
    """The scoring database's engine; write commands migrate it first, read-only ones only check the schema."""
    from mlcore import db
    engine = db.make_engine(settings)
    if upgrade:
        db.upgrade(engine)
    else:
        import sqlalchemy as sa
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('model_versions')")).scalar() is None:
                raise ConfigError("this database has no client-scoring schema yet: run `mlcore db upgrade` first.")
    return engine


def cmd_db(args, settings):
    from mlcore import db
    if args.action == "upgrade":
        applied = db.upgrade(db.make_engine(settings))
        print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    elif args.action == "url":
        print(db.database_url(settings))
    elif args.action == "start":
        url = db.start_embedded(settings.pgdata, cleanup_mode=None)
        db.upgrade(db.make_engine(url))
        print(url)
    elif args.action == "stop":
        print("stopped" if db.stop_embedded(settings.pgdata) else "no embedded server was running")


def cmd_ingest(args, settings):
    from mlcore.ingest import ingest_file
    engine = _engine(settings)
    for path in args.paths:
        r = ingest_file(engine, args.kind, path)
        print(f"{r.source}: {r.rows_in_file} rows read, {r.rows_inserted} new rows loaded into {args.kind}")


def _world_kinds():
    from mlcore.synth import KINDS
    return KINDS


def cmd_synth(args, settings):
    from mlcore.synth import WorldSpec, write_world
    spec = WorldSpec(n_clients=args.clients, days=args.days, seed=args.seed, drift_day=args.drift_day,
                     horizon_days=settings.horizon_days, start=args.start, drift_flip_share=args.drift_flip_share,
                     drift_concepts_per_note=args.drift_concepts_per_note, kind=args.kind,
                     purchases=args.purchases)
    counts = write_world(spec, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def cmd_train(args, settings):
    from mlcore.training import train_tier
    res = train_tier(_engine(settings), settings, args.tier, args.as_of, args.reason, args.seed, args.since)
    m = res.metrics
    print(f"{args.tier} v{res.model.version}: trained on {res.n_train} rows in {res.fit_seconds:.1f}s, "
          f"validated on {res.n_valid} rows")
    for target, key in (("purchase", "auc"), ("churn", "auc"), ("clv", "r2")):
        v = m[target][key]
        print(f"  {target:8s} {key.upper():4s} {v['value']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]  "
              f"baseline {m[target]['baseline'][key]:.4f}")
    print(f"  gate: {'promoted to champion' if res.promoted else 'kept as candidate'} ({res.gate['why']})")


def cmd_score(args, settings):
    from mlcore.scoring import score
    res = score(_engine(settings), settings, args.tier, args.date, run_id=args.run_id)
    print(f"scored {res.n_clients} clients for {res.scored_for} with {res.tier} v{res.model_version} "
          f"in {res.seconds:.1f}s (run {res.run_id})")


def cmd_models(args, settings):
    from mlcore.registry import Registry
    frame = Registry(_engine(settings, upgrade=False), settings.model_store).list()
    if frame.empty:
        print("no models registered yet; run `mlcore train --tier fast|elite`")
        return
    frame["sha256"] = frame["sha256"].str[:12]
    print(frame.to_string(index=False))
    from mlcore.selection import selection_table
    registry = Registry(_engine(settings, upgrade=False), settings.model_store)
    for tier in sorted(frame["tier"].unique()):
        champion = registry.champion(tier)
        if champion is not None:
            table = selection_table(champion.metrics)
            if len(table):
                print(f"\n{tier} v{champion.version} (champion): candidates per target, scored on the newest "
                      "training rows (lower is better; * chosen)")
                print(table.to_string(index=False))
                for target, entry in champion.metrics.items():
                    why = (entry.get("selection") or {}).get("why") if isinstance(entry, dict) else None
                    if why:
                        print(f"  {target}: {why}")


def cmd_promote(args, settings):
    from mlcore.registry import Registry
    mv = Registry(_engine(settings), settings.model_store).promote(args.tier, args.version,
                                                                   {"promote": True, "why": "manual promotion"})
    print(f"{mv.tier} v{mv.version} is now the champion")


def cmd_drift(args, settings):
    from mlcore import monitoring
    engine = _engine(settings, upgrade=args.action != "history")
    if args.action == "history":
        frame = monitoring.history(engine, args.tier)
        print(frame.tail(args.last).to_string(index=False) if len(frame) else "no drift checks yet")
        return
    if args.date is None:
        raise ConfigError("`mlcore drift check` needs --date (the check's day, e.g. --date 2025-06-30).")
    from mlcore.alerts import mark_recorded_only, raise_alert
    for tier in ([args.tier] if args.tier else ["elite", "fast"]):
        result = monitoring.check_tier(engine, settings, tier, args.date, run_id=f"cli__{dt.datetime.now():%Y%m%dT%H%M%S}")
        if result is None:
            print(f"{tier}: no champion and no served predictions; nothing to check")
            continue
        s = monitoring.summary(result)
        live = ", ".join(f"{t} {v:.3f}" for t, v in s["live_auc"].items() if v is not None) or "—"
        base = ", ".join(f"{t} {v:.3f}" for t, v in s["baseline_auc"].items() if v is not None) or "—"
        est = ", ".join(f"{t} {v:.3f}" for t, v in s["estimated_auc"].items() if v is not None) or "—"
        print(f"{tier} {args.date}: {s['decision']} (action {s['action']}), n={s['n']} from versions "
              f"{s['served_versions'] or '—'}; live AUC {live} vs baseline {base}; "
              f"estimated AUC (no labels yet) {est}: {s['estimate_decision']} (action {s['estimate_action']})")
        for spec in monitoring.alerts_for(result):
            alert = raise_alert(engine, spec.kind, spec.dedup_key, spec.title, spec.payload, spec.tier)
            mark_recorded_only(engine, alert.id)
            print(f"  {'recorded' if alert.new else 'already recorded'} alert {alert.id}: {spec.title}")
        if result.wants_retrain:
            hint = f"mlcore train --tier {tier} --reason drift --as-of {args.date} --since {result.since}"
            if args.retrain:
                from mlcore.training import train_tier
                res = train_tier(engine, settings, tier, args.date, "drift", since=result.since)
                print(f"  drift retraining: {tier} v{res.model.version}, {res.gate['why']}")
            else:
                print(f"  a drift retraining is due: `{hint}` (or add --retrain)")


def cmd_check_secrets(args, settings):
    import os

    from mlcore.deployment import check_secrets
    problems = check_secrets(os.environ, args.names)
    if problems:
        raise ConfigError(f"refusing to start with {len(problems)} unsafe secret(s):\n  " + "\n  ".join(problems))
    print(f"{len(args.names)} secret(s) set and not placeholders")


def cmd_demo(args, settings):
    from mlcore.demo import run_demo
    run_demo(settings, clients=args.clients, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlcore", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("db", help="database: apply migrations, show the URL, start/stop the embedded server")
    s.add_argument("action", choices=["upgrade", "url", "start", "stop"])
    s.set_defaults(func=cmd_db)

    s = sub.add_parser("ingest", help="validate and load CSV files that follow the data contract")
    s.add_argument("kind", choices=["notes", "concepts", "outcomes", "transactions"])
    s.add_argument("paths", nargs="+", type=Path)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("synth", help="write a synthetic world with known truth")
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--days", type=int, default=730)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--drift-day", type=int, default=None)
    s.add_argument("--drift-flip-share", type=float, default=0.4,
                   help="share of concepts whose effect reverses at the drift day (0: only the notes change)")
    s.add_argument("--drift-concepts-per-note", type=float, default=None,
                   help="mean concepts per note from the drift day on (default: unchanged)")
    s.add_argument("--start", type=_date, default=dt.date(2024, 1, 1))
    s.add_argument("--kind", default="baseline", choices=list(_world_kinds()),
                   help="world type: what drives the outcomes (see README, 'A zoo of worlds')")
    s.add_argument("--purchases", action="store_true",
                   help="write transactions.csv instead of outcomes.csv (outcomes derived by the label policy)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a tier on the outcome log and apply the promotion gate")
    s.add_argument("--tier", choices=["fast", "elite"], required=True)
    s.add_argument("--as-of", type=_date, default=None, help="default: the newest outcome date")
    s.add_argument("--reason", choices=["schedule", "drift", "manual"], default="manual")
    s.add_argument("--since", type=_date, default=None, help="train only on outcomes dated on or after this day")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--allow-any-date", action="store_true", help="accept a day before 1900 or after tomorrow")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("score", help="score every client with notes as of a date with the tier's champion")
    s.add_argument("--tier", choices=["fast", "elite"], required=True)
    s.add_argument("--date", type=_date, required=True)
    s.add_argument("--run-id", default=None)
    s.add_argument("--allow-any-date", action="store_true", help="accept a day before 1900 or after tomorrow")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("models", help="list the model registry")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("promote", help="make a registered version the champion (e.g. to roll back)")
    s.add_argument("--tier", choices=["fast", "elite"], required=True)
    s.add_argument("--version", type=int, required=True)
    s.set_defaults(func=cmd_promote)

    s = sub.add_parser("drift", help="drift checks: run one (as the drift_check DAG does) or list them")
    s.add_argument("action", choices=["check", "history"])
    s.add_argument("--tier", choices=["fast", "elite"], default=None, help="default: both tiers")
    s.add_argument("--date", type=_date, default=None, help="the check's day (check only)")
    s.add_argument("--retrain", action="store_true", help="check only: run the drift retraining when one is due")
    s.add_argument("--last", type=int, default=30, help="history only: the newest this many checks")
    s.add_argument("--allow-any-date", action="store_true", help="accept a day before 1900 or after tomorrow")
    s.set_defaults(func=cmd_drift)

    s = sub.add_parser("check-secrets", help="refuse unset, placeholder or short secrets (environment variable names)")
    s.add_argument("names", nargs="+", metavar="VAR")
    s.set_defaults(func=cmd_check_secrets)

    s = sub.add_parser("demo", help="the main job: synthetic world -> ingest -> train both tiers -> score")
    s.add_argument("--clients", type=int, default=20_000)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlcore.progress").setLevel(logging.INFO)   # progress lines when stderr is not a terminal
    try:
        _check_days(args)
        settings = Settings.from_env()
        args.func(args, settings)
    except (InputDataError, ModelNotFoundError, ArtifactIntegrityError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except LockTimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except Exception as exc:
        import sqlalchemy as sa
        if isinstance(exc, (sa.exc.ArgumentError, sa.exc.NoSuchModuleError)):
            print(f"error: DATABASE_URL is not a usable database URL ({_first_line(exc)}); expected e.g. "
                  f"postgresql://user@host:5432/client_scoring", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(exc, sa.exc.OperationalError) and _is_connect_error(exc):
            print(f"error: cannot reach the scoring database: {_first_line(exc)} "
                  f"(check DATABASE_URL; `mlcore db url` prints the one in use)", file=sys.stderr)
            return EXIT_ENVIRONMENT
        raise
    return 0


def _check_days(args) -> None:
    """Refuse a day far in the past or in the future (a typo like 9999-12-31 would take over the
    analyst views) unless ``--allow-any-date`` says it is meant."""
    from mlcore.ingest import day_problem
    if getattr(args, "allow_any_date", False):
        return
    for flag, name in (("--date", "date"), ("--as-of", "as_of"), ("--since", "since")):
        day = getattr(args, name, None)
        problem = day_problem(day) if isinstance(day, dt.date) and args.command != "synth" else None
        if problem:
            raise ConfigError(f"{flag} {problem}. Pass --allow-any-date if this day is really meant.")


def _first_line(exc) -> str:
    return (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0]


def _is_connect_error(exc) -> bool:
    """True for a failure to open a connection (server down, unknown host, role or database)."""
    text = str(getattr(exc, "orig", exc))
    return any(s in text for s in ("could not connect", "Connection refused", "could not translate host name",
                                   "does not exist", "password authentication failed", "no pg_hba.conf entry",
                                   "connection to server", "timeout expired"))


if __name__ == "__main__":
    sys.exit(main())
