CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    cause TEXT NOT NULL,
    outcome TEXT NOT NULL,
    family TEXT,
    netns_inode INTEGER,
    netns_name TEXT,
    actor_pid INTEGER,
    actor_comm TEXT,
    actor_unit TEXT,
    actor_container TEXT,
    route_table INTEGER,
    json TEXT NOT NULL
);
CREATE INDEX events_ts ON events (ts_ns);
CREATE INDEX events_actor_comm_ts ON events (actor_comm, ts_ns);
CREATE INDEX events_kind_ts ON events (kind, ts_ns);
