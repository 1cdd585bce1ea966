-- Concepts the upstream extractor found in each note (data contract: note_concepts).
-- client_id is filled from notes at load time so per-client reads need no join.
CREATE TABLE note_concepts (
    note_id             text NOT NULL REFERENCES notes (note_id),
    client_id           text COLLATE "C" NOT NULL,
    concept_id          text NOT NULL CHECK (concept_id <> ''),
    matched_alias       text,
    evidence_span_start integer CHECK (evidence_span_start >= 0),
    evidence_span_end   integer CHECK (evidence_span_end >= evidence_span_start),
    detection_method    text,
    confidence          real NOT NULL DEFAULT 1.0 CHECK (confidence BETWEEN 0 AND 1),
    loaded_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX note_concepts_key_idx
    ON note_concepts (note_id, concept_id, coalesce(evidence_span_start, -1), coalesce(evidence_span_end, -1));
CREATE INDEX note_concepts_client_idx ON note_concepts (client_id);
