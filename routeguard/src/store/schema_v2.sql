-- Version 2: what `routeguard report` reads of each event, apart from the event's JSON, so that
-- a report reads a few tens of bytes per event instead of the whole row (about 1.2 KB).
--
-- Actors and objects repeat: the writer stores each distinct one once while it remembers it, as
-- the JSON the event carries. No index keeps them unique (it would cost every insert a lookup):
-- after a restart the same actor may be stored again, which a report reads as one.

-- An event's `actor` member.
CREATE TABLE actors (
    id INTEGER PRIMARY KEY,
    json TEXT NOT NULL
);

-- What an event removed: its kind, its `netns` member, and the member of its kind (`route`,
-- `rule`, …; the text `null` when the event has none).
CREATE TABLE objects (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    netns TEXT NOT NULL,
    json TEXT NOT NULL
);

-- One row per row of `events` (same id), in time order. `kind`, `cause`, `outcome` and `event`
-- are spelled as in the JSON; `restore` is the event's `restore` member, NULL when it has none;
-- `actor_id` is NULL for an event no process caused.
CREATE TABLE facts (
    ts_ns INTEGER NOT NULL,
    id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    cause TEXT NOT NULL,
    outcome TEXT NOT NULL,
    errno INTEGER,
    error TEXT,
    event TEXT NOT NULL,
    restore TEXT,
    actor_id INTEGER REFERENCES actors (id),
    object_id INTEGER NOT NULL REFERENCES objects (id),
    PRIMARY KEY (ts_ns, id)
) WITHOUT ROWID;

-- However an event goes (pruning, or by hand), its facts go with it.
CREATE TRIGGER events_delete_facts AFTER DELETE ON events BEGIN
    DELETE FROM facts WHERE ts_ns = old.ts_ns AND id = old.id;
END;
