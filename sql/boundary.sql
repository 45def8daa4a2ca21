-- boundary: Postgres errors raised inside lwwsync's backend calls (pg_call,
-- pg_ext/src/guard.h) reach the caller as Postgres printed them, and the
-- session goes on: after each failure an apply, a local write and a read of
-- the changes succeed in the same session.
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_boundary;
\c lww_boundary
CREATE EXTENSION lwwsync;
CREATE TABLE t(id int PRIMARY KEY, name varchar(5), n int, must text NOT NULL DEFAULT 'x');
SELECT lww_track('t');

CREATE FUNCTION now_hlc() RETURNS text LANGUAGE sql AS
$$ SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text $$;
-- Rows of table t (registers name, n, must) from one peer.
CREATE FUNCTION rows_t(row_json text) RETURNS text LANGUAGE sql AS $$
    SELECT format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000b1",'
                  '"since":"0","upto":"1","nodes":["00000000-0000-4000-8000-0000000000b1"],'
                  '"tables":[{"name":"t","key":["id"],"columns":["name","n","must"],"rows":[%s]}]}',
                  replace(row_json, '$HLC', now_hlc()))
$$;
-- A new row `id` from the peer: name, n and must set.
CREATE FUNCTION good(id int) RETURNS text LANGUAGE sql AS $$
    SELECT rows_t(format('{"key":[%s],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"r%s"],[1,%s],[2,"m"]]}', id, id, id))
$$;
-- What the session must still do after a failure: apply a row, write one
-- locally, read both back from the feed.
CREATE FUNCTION still_works(id int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    applied jsonb;
    keys text;
BEGIN
    applied := lww_apply(good(id))::jsonb;
    INSERT INTO t(id, name, n) VALUES (id + 1000, 'local', id);
    SELECT string_agg(r->'key'->>0, ',' ORDER BY (r->'key'->>0)::int) INTO keys
    FROM jsonb_array_elements(lww_changes(0)::jsonb->'tables'->0->'rows') r
    WHERE (r->'key'->>0)::int IN (id, id + 1000);
    RETURN format('applied %s, feed has %s', applied->'applied', keys);
END
$$;
-- The message and the innermost context line of a failing statement.
CREATE FUNCTION error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    ctx text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT;
    RETURN msg || ' | ' || split_part(ctx, E'\n', 1);
END
$$;
SELECT still_works(1);

\set VERBOSITY terse
-- ---------------------------------------------------------------- values.cpp: input functions
-- Too long for varchar(5): varchar's input function ereports.
SELECT lww_apply(rows_t('{"key":[2],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"toolong"]]}'));
SELECT still_works(2);
-- Text into an integer column.
SELECT lww_apply(rows_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,"abc"]]}'));
SELECT still_works(3);
-- The same inside a transaction: the savepoint rolls back, the rest commits.
BEGIN;
SELECT still_works(4);
SAVEPOINT s;
SELECT lww_apply(rows_t('{"key":[5],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"toolong"]]}'));
ROLLBACK TO SAVEPOINT s;
SELECT still_works(5);
COMMIT;
SELECT id, name, n, must FROM t WHERE id BETWEEN 2 AND 5 ORDER BY id;

-- ---------------------------------------------------------------- spi.cpp: statements that fail
-- A NOT NULL violation parks the row (lww_rejected) with Postgres's message;
-- the other row of the batch applies.
SELECT lww_apply(rows_t('{"key":[6],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"six"],[2,null]]},
                         {"key":[7],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"seven"],[2,"m"]]}'))::jsonb->'applied' AS applied;
SELECT "table", key, reason FROM lww_rejected;
SELECT id, name FROM t WHERE id IN (6, 7) ORDER BY id;
SELECT still_works(6);
-- An app trigger that fires during the apply (ENABLE ALWAYS) and raises.
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.n = 13 THEN
        RAISE EXCEPTION 'the app refuses row %', NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER refuse AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION refuse();
ALTER TABLE t ENABLE ALWAYS TRIGGER refuse;
SELECT lww_apply(rows_t('{"key":[8],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"eight"],[1,13],[2,"m"]]}'));
SELECT still_works(8);
-- After a row parked in the same statement (an error caught inside it), the
-- app's error still comes with its own context, nothing stale around it.
SELECT error_of(format('SELECT lww_apply(%L)', rows_t(
  '{"key":[9],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"nine"],[2,null]]},
   {"key":[10],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"ten"],[1,13],[2,"m"]]}')));
SELECT still_works(10);
-- A cancel (statement_timeout) while an app trigger runs during the apply.
CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.n = 13 THEN
        RAISE EXCEPTION 'the app refuses row %', NEW.id;
    END IF;
    IF NEW.n = 99 THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN NULL;
END
$$;
SET statement_timeout = '200ms';
SELECT lww_apply(rows_t('{"key":[11],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"slow"],[1,99],[2,"m"]]}'));
RESET statement_timeout;
SELECT still_works(11);
DROP TRIGGER refuse ON t;
SELECT id, name, n FROM t WHERE id BETWEEN 6 AND 11 ORDER BY id;

-- ---------------------------------------------------------------- changes.cpp: a read that fails
-- lww_changes reads the rows with the caller's rights: a row-level security
-- policy whose function raises fails the read.
CREATE ROLE regress_lww_boundary_reader;
GRANT SELECT ON t TO regress_lww_boundary_reader;
CREATE FUNCTION visible(id int) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    IF id = 7 THEN
        RAISE EXCEPTION 'the policy cannot decide row %', id;
    END IF;
    RETURN true;
END
$$;
CREATE POLICY undecided ON t FOR SELECT USING (visible(id));
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
SET ROLE regress_lww_boundary_reader;
SELECT lww_changes(0);
RESET ROLE;
DROP POLICY undecided ON t;
ALTER TABLE t DISABLE ROW LEVEL SECURITY;
-- The reader's next read, and everything else, works.
SET ROLE regress_lww_boundary_reader;
SELECT jsonb_array_length(lww_changes(0)::jsonb->'tables'->0->'rows') AS rows_read;
RESET ROLE;
SELECT still_works(14);

-- ---------------------------------------------------------------- state.cpp: the change sequence
-- nextval of lwwsync.seq fails: in an apply and in a local write's capture.
SELECT setval('lwwsync.seq', 100000);
ALTER SEQUENCE lwwsync.seq MAXVALUE 100000;
SELECT lww_apply(good(12));
INSERT INTO t(id, name, n) VALUES (12, 'x', 12);
UPDATE t SET n = n + 1 WHERE id = 1;
ALTER SEQUENCE lwwsync.seq NO MAXVALUE;
SELECT still_works(12);
SELECT lww_seq() > 100000 AS seq_goes_on;
\set VERBOSITY default

-- Nothing else was written meanwhile.
SELECT id, name, n, must FROM t ORDER BY id;
SELECT count(*) AS rows_in_feed FROM jsonb_array_elements(lww_changes(0)::jsonb->'tables'->0->'rows');

\c :main_db
DROP DATABASE lww_boundary;
DROP ROLE regress_lww_boundary_reader;
