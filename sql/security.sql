-- security: lww_apply and lww_changes act with the caller's rights (GRANTs
-- and row-level security hold), the extension's own privileges never run a
-- caller's code, and identifiers and values from anywhere stay data.
SELECT current_database() AS main_db \gset
SELECT 'postgresql:///lww_sec_a?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_a \gset
CREATE ROLE regress_lww_reader;
CREATE ROLE regress_lww_writer;
CREATE ROLE regress_lww_nobody;
CREATE ROLE regress_lww_alice;
CREATE ROLE regress_lww_bob;
CREATE ROLE regress_lww_owner;
CREATE ROLE regress_lww_mallory;
CREATE DATABASE lww_sec_a;
CREATE DATABASE lww_sec_b;
\c lww_sec_a
CREATE EXTENSION lwwsync;
CREATE TABLE doc(id int PRIMARY KEY, owner text, body text);
INSERT INTO doc VALUES (1, 'regress_lww_alice', 'a1'), (2, 'regress_lww_bob', 'b1');
SELECT lww_track('doc');
-- Change sets for table doc, stamped now, from the calling role's own node
-- (a node id belongs to the principal that first uses it).
CREATE FUNCTION doc_cs(rows_json text) RETURNS text LANGUAGE sql AS $$
    SELECT '{"format":"lwwsync.changeset","version":1,"origin":"' || n || '",'
        || '"since":"0","upto":"1","nodes":["' || n || '"],'
        || '"tables":[{"name":"doc","key":["id"],"columns":["owner","body"],"rows":['
        || replace(rows_json, '$HLC', ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text)
        || ']}]}'
    FROM (SELECT md5(current_user)::uuid::text AS n) AS origin
$$;
-- The table with its metadata, as a fingerprint.
CREATE FUNCTION doc_state() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|', (SELECT string_agg(doc::text, ';' ORDER BY id) FROM doc),
                              (lww_changes(0)::jsonb - 'upto')::text))
$$;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION doc_cs(text), doc_state(), try(text) TO PUBLIC;
GRANT SELECT ON doc TO regress_lww_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON doc TO regress_lww_writer, regress_lww_alice, regress_lww_bob;
SELECT doc_state() AS fp \gset

-- ---------------------------------------------------------------- GRANTs
\set VERBOSITY terse
SET ROLE regress_lww_reader;
-- Reading is allowed: the reader may pull changes.
SELECT jsonb_array_length((lww_changes(0)::jsonb)->'tables'->0->'rows') AS rows_visible;
-- Writing is not, through lww_apply either: insert, update, delete.
SELECT lww_apply(doc_cs('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"],[1,"x"]]}'));
SELECT lww_apply(doc_cs('{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[1,"changed"]]}'));
SELECT lww_apply(doc_cs('{"key":[2],"gen":2,"stamp":["$HLC",0],"row":true}'));
-- lww_sync opens connections from the server: only for roles granted it.
SELECT lww_sync(replace(:'url_a', 'lww_sec_a', 'lww_sec_b'));
RESET ROLE;
SELECT doc_state() = :'fp' AS unchanged;
-- A role with no rights on the table reads nothing (the table is skipped,
-- its keys and stamps too) and writes nothing.
SET ROLE regress_lww_nobody;
SELECT jsonb_array_length((lww_changes(0)::jsonb)->'tables') AS tables_visible;
SELECT lww_apply(doc_cs('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"],[1,"x"]]}'));
RESET ROLE;
SELECT doc_state() = :'fp' AS unchanged;
-- The writer may.
SET ROLE regress_lww_writer;
SELECT lww_apply(doc_cs('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_lww_bob"],[1,"b3"]]}'));
INSERT INTO doc VALUES (4, 'regress_lww_alice', 'a4');
RESET ROLE;
SELECT * FROM doc ORDER BY id;
-- Tracking needs the table owner's rights; the owner needs no more.
SET ROLE regress_lww_mallory;
SELECT lww_track('doc');
SELECT lww_untrack('doc');
RESET ROLE;
SELECT name FROM lwwsync.tables ORDER BY name;
CREATE SCHEMA app AUTHORIZATION regress_lww_owner;
SET ROLE regress_lww_owner;
CREATE TABLE app.notes(id int PRIMARY KEY, body text);
INSERT INTO app.notes VALUES (1, 'mine');
SELECT lww_track('app.notes');
INSERT INTO app.notes VALUES (2, 'also mine');
SELECT lww_untrack('app.notes');
RESET ROLE;
SELECT name FROM lwwsync.tables ORDER BY name;

-- ---------------------------------------------------------------- row-level security
ALTER TABLE doc ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON doc USING (owner = current_user) WITH CHECK (owner = current_user);
SELECT doc_state() AS fp \gset
SET ROLE regress_lww_alice;
SELECT * FROM doc ORDER BY id;
-- Her pull holds her rows only.
SELECT r->'key' AS key FROM jsonb_array_elements((lww_changes(0)::jsonb)->'tables'->0->'rows') r ORDER BY 1;
-- A row that would belong to bob: refused by the policy's WITH CHECK, parked
-- in her lww_rejected (the rest of a batch would apply).
SELECT lww_apply(doc_cs('{"key":[5],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_lww_bob"],[1,"planted"]]}'));
-- Bob's rows, hidden from her: an update and a delete are rejected (counted,
-- not applied), as the rows' existence is none of her business.
SELECT lww_apply(doc_cs('{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"defaced"]]}'))->'rejected' AS update_rejected;
SELECT lww_apply(doc_cs('{"key":[2],"gen":2,"stamp":["$HLC",0],"row":true}'))->'rejected' AS delete_rejected;
-- Her own row handed over to bob.
SELECT lww_apply(doc_cs('{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"regress_lww_bob"]]}'));
-- Her parked rows, and nobody else's.
SELECT "table", key, reason FROM lww_rejected ORDER BY first_seen, key;
RESET ROLE;
SELECT count(*) AS parked_in_store FROM lwwsync.rejected;
SELECT doc_state() = :'fp' AS unchanged;
-- Within the policy, all is well.
SET ROLE regress_lww_alice;
SELECT lww_apply(doc_cs('{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[1,"a1 edited"]]}'));
RESET ROLE;
SELECT * FROM doc ORDER BY id;
ALTER TABLE doc DISABLE ROW LEVEL SECURITY;

-- ---------------------------------------------------------------- the extension's rights never run a caller's code
-- A role that can create functions plants look-alikes of built-ins the
-- extension might call, ahead of pg_catalog in its search_path; each records
-- who ran it. None may ever run as anyone but her.
CREATE SCHEMA trap AUTHORIZATION regress_lww_mallory;
CREATE TABLE calls(fn text, who text);
GRANT INSERT ON calls TO PUBLIC;
CREATE TABLE board(id int PRIMARY KEY, msg text);
SELECT lww_track('board');
GRANT SELECT, INSERT, UPDATE ON board TO regress_lww_mallory;
SET ROLE regress_lww_mallory;
CREATE FUNCTION trap.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES ('unnest', current_user);
    RETURN QUERY SELECT pg_catalog.unnest(a);
END $$;
CREATE FUNCTION trap.nextval(a text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES ('nextval', current_user);
    RETURN pg_catalog.nextval(a::regclass);
END $$;
CREATE FUNCTION trap.int4eq(a int4, b int4) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES ('int4 =', current_user);
    RETURN pg_catalog.int4eq(a, b);
END $$;
CREATE OPERATOR trap.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = trap.int4eq);
CREATE FUNCTION trap.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.calls VALUES ('text =', current_user);
    RETURN pg_catalog.texteq(a, b);
END $$;
CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.texteq);
SET search_path = trap, public, pg_catalog;
SELECT lww_node_id() IS NOT NULL AS has_id;
INSERT INTO board VALUES (1, 'hello');
UPDATE board SET msg = 'hello again' WHERE id = 1;
SELECT jsonb_array_length((lww_changes(0)::jsonb)->'tables') AS tables_visible;
SELECT lww_apply(replace(replace(doc_cs('{"key":[7],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"m"]]}'),
    '"name":"doc"', '"name":"board"'), '"columns":["owner","body"]', '"columns":["msg"]'));
CREATE TABLE trap.mine(id int PRIMARY KEY, v text);
INSERT INTO trap.mine VALUES (1, 'mine');
SELECT lww_track('trap.mine');
INSERT INTO trap.mine VALUES (2, 'mine too');
SELECT lww_untrack('trap.mine');
RESET ROLE;
RESET search_path;
SELECT fn, who FROM calls WHERE who <> 'regress_lww_mallory' GROUP BY fn, who ORDER BY fn;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_lww_mallory';
SELECT * FROM board ORDER BY id;
\set VERBOSITY default

-- ---------------------------------------------------------------- hostile names and values
-- Identifiers with quotes, semicolons, comment marks and spaces, in both
-- databases; a table "x" that an injection would drop.
CREATE SCHEMA "sch""ema; --";
CREATE TABLE x(id int PRIMARY KEY);
CREATE TABLE "we""ird; table"(
    "key; --" int PRIMARY KEY,
    "col ; drop table x; --" text,
    "Mixed ""Case"" $1" int,
    "'; DROP TABLE doc; --" text);
CREATE TABLE "sch""ema; --"."t""2; drop table x"("id"")--" text PRIMARY KEY, "v; --" text);
SELECT lww_track('"we""ird; table"'), lww_track('"sch""ema; --"."t""2; drop table x"');
INSERT INTO "we""ird; table" VALUES
    (1, 'x''); DROP TABLE x; --', 1, '"; DROP TABLE doc; --'),
    (2, E'back\\slash \\x00 $$ $1 %s %L', -2, NULL);
INSERT INTO "sch""ema; --"."t""2; drop table x" VALUES ('k"'') --', 'v'';--');
UPDATE "we""ird; table" SET "Mixed ""Case"" $1" = 22 WHERE "key; --" = 2;
SELECT name, key_columns, columns FROM lwwsync.tables WHERE name NOT IN ('doc', 'board') ORDER BY name;
SELECT t->>'name' AS wire_name, t->'key' AS key, t->'columns' AS columns
FROM jsonb_array_elements((lww_changes(0)::jsonb)->'tables') t WHERE t->>'name' NOT IN ('doc', 'board') ORDER BY 1;
-- A change set naming a table or column with SQL in it: held as data in
-- lwwsync.pending (docs/SCHEMA.md), nothing runs.
\set VERBOSITY terse
SELECT lww_apply(replace(doc_cs('{"key":[9],"gen":1,"stamp":["$HLC",0],"row":true}'), '"name":"doc"', '"name":"doc\"; DROP TABLE x; --"'));
SELECT lww_apply(replace(doc_cs('{"key":[9],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}'), '"columns":["owner","body"]', '"columns":["owner\" = 1; DROP TABLE x; --"]'));
SELECT lww_apply(replace(doc_cs('{"key":[9],"gen":1,"stamp":["$HLC",0],"row":true}'), '"key":["id"]', '"key":["id\"; DROP TABLE x; --"]'));
SELECT tbl, columns FROM lwwsync.pending ORDER BY id;
DELETE FROM lwwsync.pending;
\set VERBOSITY default
-- The same schema on the other side, then a sync both ways.
\c lww_sec_b
CREATE EXTENSION lwwsync;
CREATE SCHEMA "sch""ema; --";
CREATE TABLE x(id int PRIMARY KEY);
CREATE TABLE doc(id int PRIMARY KEY, owner text, body text);
CREATE TABLE board(id int PRIMARY KEY, msg text);
CREATE TABLE "we""ird; table"(
    "key; --" int PRIMARY KEY,
    "col ; drop table x; --" text,
    "Mixed ""Case"" $1" int,
    "'; DROP TABLE doc; --" text);
CREATE TABLE "sch""ema; --"."t""2; drop table x"("id"")--" text PRIMARY KEY, "v; --" text);
SELECT lww_track('doc'), lww_track('board'), lww_track('"we""ird; table"'), lww_track('"sch""ema; --"."t""2; drop table x"');
INSERT INTO "we""ird; table" VALUES (3, 'from b; --', 3, 'b');
SELECT (s->'received'->>'applied')::int > 0 AS pulled, (s->'sent'->>'applied')::int > 0 AS pushed
FROM lww_sync(:'url_a') s;
SELECT * FROM "we""ird; table" ORDER BY 1;
SELECT * FROM "sch""ema; --"."t""2; drop table x";
SELECT md5(string_agg(w::text, ';' ORDER BY "key; --")) AS weird_b FROM "we""ird; table" w \gset
SELECT md5(string_agg(t::text, ';')) AS t2_b FROM "sch""ema; --"."t""2; drop table x" t \gset
SELECT count(*) AS tables_left FROM pg_tables WHERE tablename IN ('x', 'doc', 'board');
\c lww_sec_a
SELECT md5(string_agg(w::text, ';' ORDER BY "key; --")) = :'weird_b' AS same_weird FROM "we""ird; table" w;
SELECT md5(string_agg(t::text, ';')) = :'t2_b' AS same_t2 FROM "sch""ema; --"."t""2; drop table x" t;
SELECT count(*) AS tables_left FROM pg_tables WHERE tablename IN ('x', 'doc', 'board', 'calls');
SELECT * FROM "we""ird; table" ORDER BY 1;

\c :main_db
DROP DATABASE lww_sec_a;
DROP DATABASE lww_sec_b;
DROP ROLE regress_lww_reader, regress_lww_writer, regress_lww_nobody, regress_lww_alice,
          regress_lww_bob, regress_lww_owner, regress_lww_mallory;
