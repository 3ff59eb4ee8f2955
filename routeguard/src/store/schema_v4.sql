-- Version 4: the daemon writes faster. Nothing routeguard runs reads these two indexes (a report
-- reads `facts`, or with a filter flag every event's JSON in time order through `events_ts`), and
-- each cost every insert a b-tree update: a million-route flush outran the store.
DROP INDEX IF EXISTS events_actor_comm_ts;
DROP INDEX IF EXISTS events_kind_ts;
