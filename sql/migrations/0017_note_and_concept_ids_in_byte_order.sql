-- note_id and concept_id compare and sort byte by byte, like client_id (0001): ids have no
-- linguistic order, and the default collation's strcoll makes every index build on them about
-- twice as slow (the unique concept key of the 1M-client world: 13.0 s -> 6.6 s).
-- Equality is unchanged (both collations are deterministic), so no key becomes a duplicate.
-- Changing a text column's collation rewrites no table, only the indexes on it.
ALTER TABLE note_concepts DROP CONSTRAINT note_concepts_note_id_fkey;
ALTER TABLE notes ALTER COLUMN note_id TYPE text COLLATE "C";
ALTER TABLE note_concepts
    ALTER COLUMN note_id TYPE text COLLATE "C",
    ALTER COLUMN concept_id TYPE text COLLATE "C";
ALTER TABLE note_concepts
    ADD CONSTRAINT note_concepts_note_id_fkey FOREIGN KEY (note_id) REFERENCES notes (note_id);
