-- Episode search indexes the task's name and error only. Indexing the task type made a query
-- word like "review" or "testing" match every episode of that type (a sixth of all, or more),
-- and bm25 scores every match: most of a search's time, for matches that say little about
-- the name. The type stays in `episodes` (and in every hit).

DROP TRIGGER episodes_fts_insert;
DROP TRIGGER episodes_fts_delete;
DROP TRIGGER episodes_fts_update;
DROP TABLE episodes_vocab;
DROP TABLE episodes_fts;

CREATE VIRTUAL TABLE episodes_fts USING fts5(
    name,
    error,
    content = 'episodes',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE VIRTUAL TABLE episodes_vocab USING fts5vocab(episodes_fts, row);

CREATE TRIGGER episodes_fts_insert AFTER INSERT ON episodes BEGIN
    INSERT INTO episodes_fts (rowid, name, error) VALUES (new.id, new.name, new.error);
END;

CREATE TRIGGER episodes_fts_delete AFTER DELETE ON episodes BEGIN
    INSERT INTO episodes_fts (episodes_fts, rowid, name, error)
    VALUES ('delete', old.id, old.name, old.error);
END;

CREATE TRIGGER episodes_fts_update AFTER UPDATE OF name, error ON episodes BEGIN
    INSERT INTO episodes_fts (episodes_fts, rowid, name, error)
    VALUES ('delete', old.id, old.name, old.error);
    INSERT INTO episodes_fts (rowid, name, error) VALUES (new.id, new.name, new.error);
END;

INSERT INTO episodes_fts (episodes_fts) VALUES ('rebuild');
