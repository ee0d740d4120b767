-- Ids sort by code point, as titles do and as on SQLite, whatever the database's locale: the
-- tie-break of every listing order is the same on both back-ends and in the service's own
-- ordering of a page (the indexes on id are rebuilt).
ALTER TABLE tasks ALTER COLUMN id SET DATA TYPE TEXT COLLATE "C";
