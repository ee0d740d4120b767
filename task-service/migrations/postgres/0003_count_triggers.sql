-- The per-owner counts follow every insert, completion change and delete, inside the writing
-- statement itself, so nothing else has to keep them in step.
CREATE FUNCTION tasks_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts (owner_id, total, completed)
        VALUES (NEW.owner_id, 1, NEW.completed::int)
        ON CONFLICT (owner_id) DO UPDATE
        SET total = task_counts.total + 1, completed = task_counts.completed + NEW.completed::int;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE task_counts SET total = total - 1, completed = completed - OLD.completed::int
        WHERE owner_id = OLD.owner_id;
    ELSIF OLD.completed IS DISTINCT FROM NEW.completed THEN
        UPDATE task_counts SET completed = completed + (CASE WHEN NEW.completed THEN 1 ELSE -1 END)
        WHERE owner_id = NEW.owner_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_counted AFTER INSERT OR UPDATE OR DELETE ON tasks
FOR EACH ROW EXECUTE FUNCTION tasks_count();
