-- capture: local writes are captured per statement (transition tables, one
-- metadata read and one metadata write per statement). A statement that
-- writes many rows records exactly what the same writes made one row per
-- statement record: the same rows, generations and registers (one per
-- changed column), in the statement's row order. Each case runs the
-- statement on table a and its one-row equivalents on twin table b, and
-- compares what lww_changes says of each since just before.
-- Stamps and sequences differ on every run: only facts derived from them are printed.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync;

CREATE TABLE a(id int PRIMARY KEY, v text, n int, w text);
CREATE TABLE b(id int PRIMARY KEY, v text, n int, w text);
INSERT INTO a VALUES (1, 'one', 1, NULL), (2, 'two', 2, 'x'), (3, 'three', 3, NULL);
INSERT INTO b SELECT * FROM a;
SELECT lww_track('a'), lww_track('b');

-- What a change set says of table `tbl` since `since`: one line per row,
-- in the feed's order, registers as [column, value].
CREATE FUNCTION feed(since bigint, tbl text)
RETURNS TABLE(pos bigint, key jsonb, gen int, row_reg boolean, cols jsonb)
LANGUAGE sql AS $$
    SELECT p, r->'key', (r->>'gen')::int, coalesce((r->>'row')::boolean, false),
           (SELECT jsonb_agg(jsonb_build_array(c->0, c->1) ORDER BY (c->>0)::int)
              FROM jsonb_array_elements(r->'cols') c)
    FROM jsonb_array_elements((lww_changes(since)::jsonb)->'tables') t,
         jsonb_array_elements(t->'rows') WITH ORDINALITY AS x(r, p)
    WHERE t->>'name' = tbl
$$;
-- a since :a0 against b since :b0: a's lines, whether b's say the same of
-- every row, and whether in the same order.
CREATE FUNCTION same(a0 bigint, b0 bigint)
RETURNS TABLE(pos bigint, key jsonb, gen int, row_reg boolean, cols jsonb, same_rows boolean, same_order boolean)
LANGUAGE sql AS $$
    WITH fa AS (SELECT * FROM feed(a0, 'a')), fb AS (SELECT * FROM feed(b0, 'b'))
    SELECT fa.*,
           NOT EXISTS ((SELECT key, gen, row_reg, cols FROM fa EXCEPT SELECT key, gen, row_reg, cols FROM fb)
                       UNION ALL (SELECT key, gen, row_reg, cols FROM fb EXCEPT SELECT key, gen, row_reg, cols FROM fa)),
           NOT EXISTS ((SELECT pos, key FROM fa EXCEPT SELECT pos, key FROM fb)
                       UNION ALL (SELECT pos, key FROM fb EXCEPT SELECT pos, key FROM fa))
      FROM fa ORDER BY fa.pos
$$;

-- ------------------------------------------------------------ INSERT
DELETE FROM a WHERE id = 3;
DELETE FROM b WHERE id = 3;
SELECT lww_seq() AS a0 \gset
INSERT INTO a VALUES (3, 'again', 30, NULL), (4, 'four', 4, NULL), (5, 'five', NULL, 'y');
SELECT lww_seq() AS b0 \gset
INSERT INTO b VALUES (3, 'again', 30, NULL);
INSERT INTO b VALUES (4, 'four', 4, NULL);
INSERT INTO b VALUES (5, 'five', NULL, 'y');
SELECT * FROM same(:a0, :b0);   -- 3 comes back one generation later

-- ------------------------------------------------------------ UPDATE
-- One register per changed column; a row whose values stay the same records nothing.
SELECT lww_seq() AS a0 \gset
UPDATE a SET n = greatest(n, 3) WHERE id <= 4;
SELECT lww_seq() AS b0 \gset
UPDATE b SET n = greatest(n, 3) WHERE id = 1;
UPDATE b SET n = greatest(n, 3) WHERE id = 2;
UPDATE b SET n = greatest(n, 3) WHERE id = 3;
UPDATE b SET n = greatest(n, 3) WHERE id = 4;
SELECT * FROM same(:a0, :b0);
SELECT lww_seq() AS a0 \gset
UPDATE a SET v = upper(v), w = NULL WHERE id IN (2, 5);
SELECT lww_seq() AS b0 \gset
UPDATE b SET v = upper(v), w = NULL WHERE id = 2;
UPDATE b SET v = upper(v), w = NULL WHERE id = 5;
SELECT * FROM same(:a0, :b0);
-- Nothing changed, nothing recorded.
SELECT lww_seq() AS a0 \gset
UPDATE a SET v = v;
SELECT lww_seq() = :a0 AS no_sequence_taken, count(*) AS rows_recorded FROM feed(:a0, 'a');

-- ------------------------------------------------------------ DELETE
SELECT lww_seq() AS a0 \gset
DELETE FROM a WHERE id IN (1, 4);
SELECT lww_seq() AS b0 \gset
DELETE FROM b WHERE id = 1;
DELETE FROM b WHERE id = 4;
SELECT * FROM same(:a0, :b0);

-- ------------------------------------------------------------ upsert
-- INSERT ... ON CONFLICT DO UPDATE: inserted rows and updated rows, each
-- once. Postgres fires the statement's UPDATE triggers before its INSERT
-- triggers: the updated rows take their sequences first.
SELECT lww_seq() AS a0 \gset
INSERT INTO a VALUES (1, 'uno', 1, NULL), (2, 'TWO', 22, NULL), (6, 'six', 6, NULL)
    ON CONFLICT (id) DO UPDATE SET n = excluded.n;
SELECT lww_seq() AS b0 \gset
INSERT INTO b VALUES (1, 'uno', 1, NULL) ON CONFLICT (id) DO UPDATE SET n = excluded.n;
INSERT INTO b VALUES (2, 'TWO', 22, NULL) ON CONFLICT (id) DO UPDATE SET n = excluded.n;
INSERT INTO b VALUES (6, 'six', 6, NULL) ON CONFLICT (id) DO UPDATE SET n = excluded.n;
SELECT * FROM same(:a0, :b0);

-- ------------------------------------------------------------ key changes
-- A key change is a delete of the old key and an insert of the new one.
SELECT lww_seq() AS a0 \gset
UPDATE a SET id = id + 100, n = 0 WHERE id IN (5, 6);
SELECT lww_seq() AS b0 \gset
UPDATE b SET id = id + 100, n = 0 WHERE id = 5;
UPDATE b SET id = id + 100, n = 0 WHERE id = 6;
SELECT * FROM same(:a0, :b0);
-- Back onto keys whose tombstones the same table holds.
SELECT lww_seq() AS a0 \gset
UPDATE a SET id = id - 100 WHERE id > 100;
SELECT lww_seq() AS b0 \gset
UPDATE b SET id = id - 100 WHERE id = 105;
UPDATE b SET id = id - 100 WHERE id = 106;
SELECT * FROM same(:a0, :b0);
SELECT * FROM a ORDER BY id;

-- Two spellings of one key (numeric 1.0 and 1.000 are one key): one
-- metadata row, written once, through a delete and an insert.
CREATE TABLE na(id numeric PRIMARY KEY, v text);
CREATE TABLE nb(id numeric PRIMARY KEY, v text);
INSERT INTO na VALUES (1.0, 'x'), (2.0, 'y');
INSERT INTO nb VALUES (1.0, 'x'), (2.0, 'y');
SELECT lww_track('na'), lww_track('nb');
SELECT lww_seq() AS a0 \gset
UPDATE na SET id = id::numeric(10, 3);
SELECT lww_seq() AS b0 \gset
UPDATE nb SET id = id::numeric(10, 3) WHERE id = 1;
UPDATE nb SET id = id::numeric(10, 3) WHERE id = 2;
SELECT (SELECT jsonb_agg(jsonb_build_array(key, gen, row_reg, cols) ORDER BY pos) FROM feed(:a0, 'na')) AS na,
       (SELECT jsonb_agg(jsonb_build_array(key, gen, row_reg, cols) ORDER BY pos) FROM feed(:a0, 'na')) =
       (SELECT jsonb_agg(jsonb_build_array(key, gen, row_reg, cols) ORDER BY pos) FROM feed(:b0, 'nb')) AS same_as_one_row_statements;
DROP TABLE na, nb;
-- Keys moved onto each other in one statement (a swap, a rotation): every
-- key ends up holding a row, so none may be fed as a tombstone.
CREATE TABLE sw(id int, v text, CONSTRAINT sw_pk PRIMARY KEY (id) DEFERRABLE);
INSERT INTO sw VALUES (1, 'one'), (2, 'two'), (3, 'three');
SELECT lww_track('sw');
SELECT lww_seq() AS a0 \gset
UPDATE sw SET id = 3 - id WHERE id IN (1, 2);
SELECT key, gen, cols FROM feed(:a0, 'sw') ORDER BY key;
SELECT lww_seq() AS a0 \gset
UPDATE sw SET id = id % 3 + 1;
SELECT key, gen, cols FROM feed(:a0, 'sw') ORDER BY key;
SELECT * FROM sw ORDER BY id;
-- A deferred key holds a key twice until the commit: a row replaced by an
-- INSERT of the new one, then a DELETE of the old one (or of the new one)
-- lives on, one generation later, with the values the table keeps.
SELECT lww_seq() AS a0 \gset
BEGIN;
SET CONSTRAINTS sw_pk DEFERRED;
INSERT INTO sw VALUES (1, 'new one'), (2, 'new two');
DELETE FROM sw WHERE id = 1 AND v = 'three';
DELETE FROM sw WHERE v = 'new two';
COMMIT;
SELECT key, gen, cols FROM feed(:a0, 'sw') ORDER BY key;
SELECT * FROM sw ORDER BY id;
-- The same swap in replica mode (a restore, a replication worker): the row
-- trigger captures it, one event at a time.
SELECT lww_seq() AS a0 \gset
SET session_replication_role = replica;
UPDATE sw SET id = 3 - id WHERE id IN (1, 2);
RESET session_replication_role;
SELECT key, gen, cols FROM feed(:a0, 'sw') ORDER BY key;
DROP TABLE sw;

-- ------------------------------------------------------------ MERGE, COPY
SELECT lww_seq() AS a0 \gset
MERGE INTO a USING (VALUES (2, 'merged'), (7, 'seven')) AS s(id, v) ON a.id = s.id
    WHEN MATCHED THEN UPDATE SET v = s.v
    WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v, 7, NULL);
SELECT lww_seq() AS b0 \gset
UPDATE b SET v = 'merged' WHERE id = 2;
INSERT INTO b VALUES (7, 'seven', 7, NULL);
SELECT * FROM same(:a0, :b0);
SELECT lww_seq() AS a0 \gset
COPY a FROM stdin;
8	eight	8	\N
9	nine	\N	z
\.
SELECT lww_seq() AS b0 \gset
INSERT INTO b VALUES (8, 'eight', 8, NULL);
INSERT INTO b VALUES (9, 'nine', NULL, 'z');
SELECT * FROM same(:a0, :b0);

-- ------------------------------------------------------------ nested statements
-- An app trigger writing another tracked table (an audit log) and the same
-- row again (a touch counter) while the statement's capture is pending:
-- each nested statement is captured on its own, the outer one after it.
CREATE TABLE audit(id serial PRIMARY KEY, tbl text, row_id int);
SELECT lww_track('audit');
ALTER TABLE a ADD COLUMN touched int NOT NULL DEFAULT 0;
ALTER TABLE b ADD COLUMN touched int NOT NULL DEFAULT 0;
CREATE FUNCTION log_and_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit(tbl, row_id) VALUES (TG_TABLE_NAME, NEW.id);
    EXECUTE format('UPDATE %I SET touched = touched + 1 WHERE id = $1', TG_TABLE_NAME) USING NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER a_log AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION log_and_touch();
CREATE TRIGGER b_log AFTER INSERT ON b FOR EACH ROW EXECUTE FUNCTION log_and_touch();
SELECT lww_seq() AS a0 \gset
INSERT INTO a(id, v, n) VALUES (10, 'ten', 10), (11, 'eleven', 11);
SELECT lww_seq() AS b0 \gset
INSERT INTO b(id, v, n) VALUES (10, 'ten', 10);
INSERT INTO b(id, v, n) VALUES (11, 'eleven', 11);
SELECT * FROM same(:a0, :b0);
SELECT tbl, row_id, touched FROM audit JOIN a ON a.id = row_id WHERE tbl = 'a' ORDER BY audit.id;
SELECT count(*) AS audit_rows_fed FROM feed(:a0, 'audit');  -- two for a, two for b

-- ------------------------------------------------------------ savepoints, errors
-- A statement rolled back (savepoint, error) records nothing; the rest of
-- the transaction is recorded as usual.
SELECT lww_seq() AS a0 \gset
BEGIN;
UPDATE a SET n = -1 WHERE id = 2;
SAVEPOINT s;
UPDATE a SET n = -2 WHERE id IN (3, 7);
INSERT INTO a(id, v) VALUES (12, 'twelve'), (13, 'thirteen');
ROLLBACK TO SAVEPOINT s;
UPDATE a SET w = 'kept' WHERE id = 8;
SAVEPOINT t;
INSERT INTO a(id, v) VALUES (14, 'fourteen'), (2, 'duplicate');
ROLLBACK TO SAVEPOINT t;
COMMIT;
SELECT lww_seq() AS b0 \gset
UPDATE b SET n = -1 WHERE id = 2;
UPDATE b SET w = 'kept' WHERE id = 8;
SELECT * FROM same(:a0, :b0);
SELECT count(*) AS rolled_back_rows_fed FROM feed(0, 'a') WHERE key->>0 IN ('12', '13', '14');

-- ------------------------------------------------------------ TRUNCATE
-- Refused, as before: it fires no row or statement capture.
TRUNCATE a;
SELECT count(*) AS rows_left FROM a;

-- ------------------------------------------------------------ feed order
-- Every write takes its own sequence, in the statement's row order.
SELECT lww_seq() AS a0 \gset
UPDATE a SET n = 100 + id WHERE id IN (7, 3, 9);
SELECT lww_seq() - :a0 AS sequences_taken;
SELECT string_agg(key->>0, ' ' ORDER BY pos) AS feed_order,
       (SELECT string_agg(id::text, ' ' ORDER BY ctid) FROM a WHERE id IN (7, 3, 9)) AS table_order
  FROM feed(:a0, 'a');

-- ------------------------------------------------------------ inheritance trees
-- A partition, or a table with inheritance parents or children, keeps the
-- row trigger alone: a partition's statement triggers do not fire for
-- writes made through its parent, and a statement on a parent brings its
-- children's rows in its transition tables.
CREATE TABLE parted(id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
SELECT lww_track('parted_low');
-- A table joined to a tree after lww_track: lww_track again switches it.
CREATE TABLE base(id int PRIMARY KEY, v text);
SELECT lww_track('base');
CREATE TABLE derived(w text) INHERITS (base);
SELECT lww_track('base');
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('parted_low'::regclass, 'base'::regclass) AND NOT tgisinternal ORDER BY 1, 2;
SELECT lww_seq() AS p0 \gset
INSERT INTO parted VALUES (1, 'through the parent'), (2, 'too');
INSERT INTO base VALUES (1, 'base row');
INSERT INTO derived VALUES (50, 'derived row', 'w');
UPDATE base SET v = v || '!';
SELECT t->>'name' AS tbl, r->'key' AS key, (r->>'gen')::int AS gen,
       (SELECT jsonb_agg(c->1) FROM jsonb_array_elements(r->'cols') c) AS vals
  FROM jsonb_array_elements((lww_changes(:p0)::jsonb)->'tables') t, jsonb_array_elements(t->'rows') r
 ORDER BY 1, 2;
DROP TABLE parted, derived, base;

-- ------------------------------------------------------------ lww_apply's own writes
-- While lww_apply writes, the row trigger captures (it tells the merge's
-- own write from the rest); the statement triggers stay quiet, so nothing
-- is recorded twice.
CREATE TABLE c(id int PRIMARY KEY, v text);
SELECT lww_track('c');
SELECT lww_seq() AS c0 \gset
-- An ALWAYS app trigger writes the merged row again: a local write, replayed
-- above the merged registers.
CREATE FUNCTION c_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.v NOT LIKE '% (seen)' THEN UPDATE c SET v = NEW.v || ' (seen)' WHERE id = NEW.id; END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER c_touch AFTER INSERT ON c FOR EACH ROW EXECUTE FUNCTION c_touch();
ALTER TABLE c ENABLE ALWAYS TRIGGER c_touch;
SELECT (((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16))::text AS stamp \gset
SELECT lww_apply(jsonb_build_object('format', 'lwwsync.changeset', 'version', 1,
    'origin', '00000000-0000-4000-8000-00000000000c', 'since', '0', 'upto', '1',
    'nodes', jsonb_build_array('00000000-0000-4000-8000-00000000000c'),
    'tables', jsonb_build_array(jsonb_build_object('name', 'c', 'key', jsonb_build_array('id'),
        'columns', jsonb_build_array('v'), 'rows', jsonb_build_array(
            jsonb_build_object('key', jsonb_build_array(1), 'gen', 1, 'row', true,
                               'stamp', jsonb_build_array(:'stamp', 0), 'cols', jsonb_build_array(jsonb_build_array(0, 'remote'))),
            jsonb_build_object('key', jsonb_build_array(2), 'gen', 1, 'row', true,
                               'stamp', jsonb_build_array(:'stamp', 0), 'cols', jsonb_build_array(jsonb_build_array(0, 'too'))))))
    )::text)::jsonb ->> 'applied' AS applied;
SELECT * FROM c ORDER BY id;
-- One sequence for each merged row, one for each replayed local write.
SELECT lww_seq() - :c0 AS sequences_taken;
SELECT key, gen, row_reg, cols FROM feed(:c0, 'c') ORDER BY pos;

DROP TABLE a, b, c, audit;
DROP FUNCTION log_and_touch, c_touch, same, feed;
