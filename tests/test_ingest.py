"""Ingest: contract validation at the boundary, all-or-nothing loads, idempotent re-loads."""
import datetime as dt

import pytest

from pg import count
from mlcore.exceptions import InputDataError
from mlcore.ingest import ingest_file

NOTES = "note_id,client_id,date,language\nn1,c1,2025-01-02,en\nn2,c1,2025-02-03T10:15:00Z,fr\nn3,c2,2025-01-05,\n"
CONCEPTS = ("note_id,client_id,concept_id,matched_alias,evidence_span_start,evidence_span_end,"
            "detection_method,confidence\n"
            "n1,c1,gift_anniversary,anniversary gift,3,19,rule,1.0\n"
            "n1,c1,leather_goods,sac en cuir,30,41,ml,0.8\n"
            "n2,,watches,montres,0,7,llm,\n")
OUTCOMES = "client_id,purchased,churned,lifetime_value,date\nc1,1,0,2500.5,2025-05-01\nc2,0,1,0,2025-05-01\n"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.fixture
def loaded(engine, tmp_path):
    ingest_file(engine, "notes", write(tmp_path, "notes.csv", NOTES))
    return engine


def test_good_files_load_and_reload_changes_nothing(loaded, tmp_path):
    c = ingest_file(loaded, "concepts", write(tmp_path, "concepts.csv", CONCEPTS))
    o = ingest_file(loaded, "outcomes", write(tmp_path, "outcomes.csv", OUTCOMES))
    assert (c.rows_inserted, o.rows_inserted) == (3, 2)
    again = [ingest_file(loaded, k, tmp_path / f) for k, f in
             (("notes", "notes.csv"), ("concepts", "concepts.csv"), ("outcomes", "outcomes.csv"))]
    assert [r.rows_inserted for r in again] == [0, 0, 0]
    assert (count(loaded, "notes"), count(loaded, "note_concepts"), count(loaded, "outcomes")) == (3, 3, 2)
    with loaded.connect() as conn:
        import sqlalchemy as sa
        rows = conn.execute(sa.text("SELECT note_id, client_id, confidence FROM note_concepts ORDER BY 1, 3")).all()
        dates = conn.execute(sa.text("SELECT note_id, date::text FROM notes ORDER BY 1")).all()
    # client_id is filled from the note when the extractor leaves it empty; confidence defaults to 1
    assert ("n2", "c1", 1.0) in [tuple(r) for r in rows]
    assert dates[1] == ("n2", "2025-02-03")


def test_extractor_column_variants_are_accepted(loaded, tmp_path):
    text = "note_id,concept_id,start,end,confidence\nn1,watches,0,7,0.9\nn3,golf,2,6,0.7\n"
    r = ingest_file(loaded, "concepts", write(tmp_path, "variant.csv", text))
    assert r.rows_inserted == 2
    assert concept_clients(loaded) == [("n1", "c1"), ("n3", "c2")]   # from the notes: the file has no client_id
    assert (r.clients, r.newest_note) == (("c1", "c2"), dt.date(2025, 1, 5))


def test_concept_rows_that_all_name_their_client_keep_it(loaded, tmp_path):
    """The insert skips the join to notes when every row names its client: the clients are the same."""
    text = "note_id,client_id,concept_id\nn1,c1,watches\nn2,c1,golf\nn3,c2,golf\n"
    r = ingest_file(loaded, "concepts", write(tmp_path, "named.csv", text))
    assert r.rows_inserted == 3
    assert concept_clients(loaded) == [("n1", "c1"), ("n2", "c1"), ("n3", "c2")]
    assert (r.clients, r.newest_note) == (("c1", "c2"), dt.date(2025, 2, 3))


def concept_clients(engine):
    import sqlalchemy as sa
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT note_id, client_id FROM note_concepts ORDER BY 1, 2"))]


BAD_NOTES = [
    ("missing column", "note_id,date\nn9,2025-01-01\n", ["missing required column(s) client_id"]),
    ("unknown column", "note_id,client_id,date,mood\nn9,c9,2025-01-01,happy\n", ["unknown column(s) mood"]),
    ("empty file", "", ["the file is empty"]),
    ("header only", "note_id,client_id,date\n", ["no rows"]),
    ("bad date", "note_id,client_id,date\nn9,c9,2025-01-01\nn10,c9,01/02/2025x\n",
     ["row 3, column 'date'", "ISO-8601", "'01/02/2025x'"]),
    ("date out of range", "note_id,client_id,date\nn9,c9,1850-01-01\n", ["row 2, column 'date'", "from 1900-01-01"]),
    ("date in the future", "note_id,client_id,date\nn9,c9,2025-01-01\nn10,c9,9999-12-31\n",
     ["row 3, column 'date'", "(not in the future)", "'9999-12-31'"]),
    ("id far too long", "note_id,client_id,date\nn9," + "c" * 20_000 + ",2025-01-01\n",
     ["row 2, column 'client_id'", "at most 256 characters", "... (20,000 characters)"]),
    ("NUL byte", "note_id,client_id,date\nn9,c9,2025-01-01\nn10,c\x009,2025-01-01\n",
     ["line 3 contains a NUL byte"]),
    ("empty id", "note_id,client_id,date\nn9,,2025-01-01\n", ["row 2, column 'client_id'", "required"]),
    ("duplicate key", "note_id,client_id,date\nn9,c9,2025-01-01\nn9,c9,2025-01-02\n",
     ["rows 2, 3 repeat the key (note_id)"]),
    ("bad language", "note_id,client_id,date,language\nn9,c9,2025-01-01,english!!\n", ["column 'language'"]),
    ("conflicting reload", "note_id,client_id,date\nn1,c2,2025-01-02\n",
     ["row 2, column 'note_id' conflicts with a note already in the database"]),
]


@pytest.mark.parametrize("case,text,expected", BAD_NOTES, ids=[c[0] for c in BAD_NOTES])
def test_bad_notes_are_refused_whole(loaded, tmp_path, case, text, expected):
    path = write(tmp_path, "bad_notes.csv", text)
    with pytest.raises(InputDataError) as err:
        ingest_file(loaded, "notes", path)
    message = str(err.value)
    assert "bad_notes.csv" in message
    for part in expected:
        assert part in message
    assert count(loaded, "notes") == 3


HEADER = "note_id,client_id,concept_id,evidence_span_start,evidence_span_end,confidence\n"
BAD_CONCEPTS = [
    ("unknown note", HEADER + "n1,c1,golf,0,4,1\nn404,c1,golf,0,4,1\n",
     ["row 3, column 'note_id'", "not in the notes table", "'n404'"]),
    ("client disagrees", HEADER + "n1,c2,golf,0,4,1\n", ["row 2, column 'client_id'", "c1 (the client of note n1)"]),
    ("confidence out of range", HEADER + "n1,c1,golf,0,4,1.5\n",
     ["row 2, column 'confidence'", "between 0 and 1", "'1.5'"]),
    ("confidence not a number", HEADER + "n1,c1,golf,0,4,high\n", ["column 'confidence'", "'high'"]),
    ("negative span", HEADER + "n1,c1,golf,-3,4,1\n", ["column 'evidence_span_start'", "whole number from 0"]),
    ("span beyond int4", HEADER + "n1,c1,golf,0,99999999999,1\n",
     ["column 'evidence_span_end'", "whole number from 0 to 2147483647"]),
    ("span end before start", HEADER + "n1,c1,golf,9,4,1\n", ["column 'evidence_span_end'", ">= evidence_span_start"]),
    ("duplicate key", HEADER + "n1,c1,golf,0,4,1\nn1,c1,golf,0,4,0.5\n", ["rows 2, 3 repeat the key"]),
]


@pytest.mark.parametrize("case,text,expected", BAD_CONCEPTS, ids=[c[0] for c in BAD_CONCEPTS])
def test_bad_concepts_are_refused_whole(loaded, tmp_path, case, text, expected):
    with pytest.raises(InputDataError) as err:
        ingest_file(loaded, "concepts", write(tmp_path, "bad_concepts.csv", text))
    for part in ["bad_concepts.csv", *expected]:
        assert part in str(err.value)
    assert count(loaded, "note_concepts") == 0


OUT_HEADER = "client_id,purchased,churned,lifetime_value,date\n"
BAD_OUTCOMES = [
    ("flag not 0/1", OUT_HEADER + "c1,yes,0,10,2025-05-01\n", ["row 2, column 'purchased'", "0 or 1", "'yes'"]),
    ("negative value", OUT_HEADER + "c1,1,0,-5,2025-05-01\n", ["row 2, column 'lifetime_value'", ">= 0"]),
    ("value not a number", OUT_HEADER + "c1,1,0,lots,2025-05-01\n", ["column 'lifetime_value'", "'lots'"]),
    ("infinite value", OUT_HEADER + "c1,1,0,inf,2025-05-01\n", ["column 'lifetime_value'", "finite"]),
    ("bad date", OUT_HEADER + "c1,1,0,5,2025-13-45\n", ["row 2, column 'date'"]),
    ("duplicate key", OUT_HEADER + "c1,1,0,5,2025-05-01\nc1,0,0,0,2025-05-01\n", ["rows 2, 3 repeat the key"]),
    ("malformed csv", OUT_HEADER + 'c1,1,0,5,2025-05-01,extra,"\n', ["not a well-formed CSV"]),
]


@pytest.mark.parametrize("case,text,expected", BAD_OUTCOMES, ids=[c[0] for c in BAD_OUTCOMES])
def test_bad_outcomes_are_refused_whole(loaded, tmp_path, case, text, expected):
    with pytest.raises(InputDataError) as err:
        ingest_file(loaded, "outcomes", write(tmp_path, "bad_outcomes.csv", text))
    for part in ["bad_outcomes.csv", *expected]:
        assert part in str(err.value)
    assert count(loaded, "outcomes") == 0


def test_non_utf8_file_names_the_line(loaded, tmp_path):
    text = "note_id,client_id,date,language\nn7,c7,2025-01-01,fr\nn8,Cl\xe9ment,2025-01-01,fr\n"
    with pytest.raises(InputDataError) as err:
        ingest_file(loaded, "notes", write(tmp_path, "latin1.csv", text, encoding="latin-1"))
    assert "latin1.csv: line 3 is not valid UTF-8" in str(err.value)
    assert count(loaded, "notes") == 3


def test_conflicting_outcome_reload_is_refused(loaded, tmp_path):
    ingest_file(loaded, "outcomes", write(tmp_path, "o.csv", OUTCOMES))
    changed = OUTCOMES.replace("c2,0,1,0,", "c2,1,1,0,")
    with pytest.raises(InputDataError, match="row 3, column 'client_id/date' conflicts"):
        ingest_file(loaded, "outcomes", write(tmp_path, "o2.csv", changed))
    assert count(loaded, "outcomes") == 2


def test_failure_inside_the_transaction_leaves_nothing(loaded, tmp_path, monkeypatch):
    """A crash after the insert statement but before commit rolls the whole file back."""
    import mlcore.ingest as ingest

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(ingest, "_check_against_database", boom)
    with pytest.raises(RuntimeError):
        ingest_file(loaded, "outcomes", write(tmp_path, "o.csv", OUTCOMES))
    assert count(loaded, "outcomes") == 0


def test_a_load_reports_the_newest_note_it_holds_or_refers_to(engine, tmp_path):
    notes = ingest_file(engine, "notes", write(tmp_path, "notes.csv", NOTES))
    concepts = ingest_file(engine, "concepts", write(tmp_path, "concepts.csv", CONCEPTS.split("n2,")[0]))  # n1 only
    outcomes = ingest_file(engine, "outcomes", write(tmp_path, "outcomes.csv", OUTCOMES))
    assert notes.newest_note == dt.date(2025, 2, 3)           # n2, a timestamp, counts by its day
    assert concepts.newest_note == dt.date(2025, 1, 2)        # the date of note n1, which the concepts are about
    assert outcomes.newest_note is None


def test_a_huge_one_line_file_is_not_echoed(loaded, tmp_path):
    path = write(tmp_path, "one_line.csv", "x" * 5_000_000)
    with pytest.raises(InputDataError) as err:
        ingest_file(loaded, "notes", path)
    assert len(str(err.value)) < 2_000 and "one_line.csv" in str(err.value)


def test_the_audit_row_is_written_with_the_data_or_not_at_all(loaded, tmp_path, monkeypatch):
    import sqlalchemy as sa

    from mlcore import ingest

    path = write(tmp_path, "outcomes.csv", OUTCOMES)
    real = ingest._copy_batch
    monkeypatch.setattr(ingest, "_copy_batch", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        ingest_file(loaded, "outcomes", path)
    monkeypatch.setattr(ingest, "_copy_batch", real)
    with loaded.connect() as conn:
        runs = conn.execute(sa.text("SELECT source, rows_inserted FROM ingest_runs WHERE kind = 'outcomes'")).all()
    assert runs == [] and count(loaded, "outcomes") == 0
    ingest_file(loaded, "outcomes", path)
    with loaded.connect() as conn:
        runs = conn.execute(sa.text("SELECT rows_inserted FROM ingest_runs WHERE kind = 'outcomes'")).scalars().all()
    assert runs == [2] and count(loaded, "outcomes") == 2


def test_two_conflicting_files_loaded_at_once_are_not_both_accepted(loaded, tmp_path):
    """Loads of one table are serialised: the second is checked against the first and refused."""
    import threading

    n = 2000
    a = write(tmp_path, "a.csv", "client_id,purchased,churned,lifetime_value,date\n"
              + "".join(f"k{i},1,0,10,2025-05-01\n" for i in range(n)))
    b = write(tmp_path, "b.csv", "client_id,purchased,churned,lifetime_value,date\n"
              + "".join(f"k{i},0,1,0,2025-05-01\n" for i in range(n)))
    results, barrier = {}, threading.Barrier(2)

    def load(name, path):
        barrier.wait()
        try:
            results[name] = ingest_file(loaded, "outcomes", path).rows_inserted
        except InputDataError as exc:
            results[name] = str(exc)

    threads = [threading.Thread(target=load, args=(name, path)) for name, path in (("a", a), ("b", b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    loaded_counts = [v for v in results.values() if isinstance(v, int)]
    refused = [v for v in results.values() if isinstance(v, str)]
    assert loaded_counts == [n] and len(refused) == 1, results
    assert "conflicts with an outcome already in the database" in refused[0]
    assert count(loaded, "outcomes") == n
