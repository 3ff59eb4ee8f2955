-- Version 3: which machine each event happened on, and the pod of its actor, so that a report of
-- many nodes' stores can group by node. Events stored before have none (their JSON has none).

-- The indexed copies of `events`, as for the actor's unit and container.
ALTER TABLE events ADD COLUMN host_name TEXT;
ALTER TABLE events ADD COLUMN host_machine_id TEXT;
ALTER TABLE events ADD COLUMN host_node TEXT;
ALTER TABLE events ADD COLUMN actor_pod_namespace TEXT;
ALTER TABLE events ADD COLUMN actor_pod_name TEXT;
ALTER TABLE events ADD COLUMN actor_pod_uid TEXT;

-- An event's `host` member, stored once while the writer remembers it (as actors and objects).
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    json TEXT NOT NULL
);

-- NULL for an event without a host (stored before version 3).
ALTER TABLE facts ADD COLUMN host_id INTEGER REFERENCES hosts (id);
