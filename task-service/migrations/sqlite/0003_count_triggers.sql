-- The per-owner counts follow every insert, completion change and delete, inside the writing
-- statement itself: a create is then one statement, with nothing else to keep in step.
CREATE TRIGGER tasks_counted_on_insert AFTER INSERT ON tasks
BEGIN
    INSERT OR IGNORE INTO task_counts (owner_id, total, completed) VALUES (NEW.owner_id, 0, 0);
    UPDATE task_counts SET total = total + 1, completed = completed + NEW.completed
    WHERE owner_id = NEW.owner_id;
END;

CREATE TRIGGER tasks_counted_on_completion AFTER UPDATE OF completed ON tasks
WHEN OLD.completed <> NEW.completed
BEGIN
    UPDATE task_counts SET completed = completed + (CASE WHEN NEW.completed THEN 1 ELSE -1 END)
    WHERE owner_id = NEW.owner_id;
END;

CREATE TRIGGER tasks_counted_on_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET total = total - 1, completed = completed - OLD.completed
    WHERE owner_id = OLD.owner_id;
END;
