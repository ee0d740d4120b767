-- Every recorded event announces itself to the change feed, in the statement that records it:
-- `NOTIFY task_events` with the event's id and owner, sent when the transaction commits, so
-- that a write is one statement with its event however it is written.
CREATE FUNCTION task_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('task_events', id::text || ' ' || owner_id) FROM recorded;
    RETURN NULL;
END
$$;

CREATE TRIGGER task_events_announced AFTER INSERT ON task_events
REFERENCING NEW TABLE AS recorded
FOR EACH STATEMENT EXECUTE FUNCTION task_events_notify();
