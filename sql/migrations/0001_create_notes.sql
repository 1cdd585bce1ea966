-- Client-advisor notes (data contract: notes).
CREATE TABLE notes (
    note_id    text PRIMARY KEY CHECK (note_id <> ''),
    client_id  text COLLATE "C" NOT NULL CHECK (client_id <> ''),  -- byte order: scoring reads id ranges
    date       date NOT NULL,
    language   text,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_client_date_idx ON notes (client_id, date);
CREATE INDEX notes_date_idx ON notes (date);
