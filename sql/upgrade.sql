-- upgrade: every released version updates in place to the current one, and
-- a fresh install (0.1 plus the upgrade chain: one source of truth) has the
-- same objects as an upgraded one.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
DROP SCHEMA IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE ROLE regress_upg_reader;
CREATE ROLE "Regress Upg Owner";
CREATE ROLE regress_upg_monitor;
CREATE FUNCTION members() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
     WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'lwwsync') AND deptype = 'e' ORDER BY 1
$$;

-- Fresh.
CREATE EXTENSION lwwsync;
SELECT extversion = lww_version() AS versions_agree, lww_version() FROM pg_extension WHERE extname = 'lwwsync';
CREATE TABLE fresh_members AS SELECT * FROM members();
DROP EXTENSION lwwsync;

-- From 0.1, with data: a tracked table, its metadata (readable by PUBLIC in
-- 0.1 and 0.2) and a peer's cursor.
CREATE EXTENSION lwwsync VERSION '0.1';
CREATE TABLE t(id int PRIMARY KEY, v text);
GRANT SELECT ON t TO regress_upg_reader;
INSERT INTO t VALUES (1, 'one'), (2, 'two');
-- This library no longer runs with 0.1's SQL objects:
SELECT lww_track('t');
-- so what lww_track('t') of 0.1 wrote is written here: the metadata table
-- in 0.1's layout (gen, the row register and seq in columns, the column
-- registers apart from the row's in cols: column 0 of row 2 written at
-- seq 3), key 5 deleted at seq 4, the capture triggers.
SELECT format('lwwsync.%I', 'm_' || 't'::regclass::oid) AS meta, 'm_' || 't'::regclass::oid || '_seq' AS meta_seq_index \gset
CREATE TABLE :meta (k0 int NOT NULL, gen int8 NOT NULL, hlc int8 NOT NULL, node int4 NOT NULL, mseq int8 NOT NULL,
                    seq int8 NOT NULL, cols bytea, PRIMARY KEY (k0));
CREATE INDEX :"meta_seq_index" ON :meta (seq);
GRANT SELECT ON :meta TO PUBLIC;
INSERT INTO :meta VALUES (1, 1, 115658352230400000, 0, 1, 1, NULL),
    (2, 1, 115658352230400000, 0, 2, 3, '\x00010000e89ba8e69a010003'), (5, 2, 115658352295936000, 0, 4, 4, NULL);
SELECT setval('lwwsync.seq', 4);
INSERT INTO lwwsync.tables VALUES ('t'::regclass, 't', '{id}', '{v}', :'meta');
CREATE TRIGGER lwwsync_capture AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION lwwsync.lww_trigger();
CREATE TRIGGER lwwsync_no_truncate BEFORE TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_refuse_truncate();
SELECT has_table_privilege('regress_upg_reader', :'meta', 'SELECT') AS meta_public_in_01;
INSERT INTO lwwsync.peers(node, received, floor) VALUES ('00000000-0000-4000-8000-0000000000ff', 7, 7);
ALTER EXTENSION lwwsync UPDATE TO '0.2';
ALTER EXTENSION lwwsync UPDATE TO '0.3';
-- What an administrator may have done to 0.7's metadata table: another
-- owner (a name that needs quoting), a grant, a storage option.
ALTER TABLE :meta OWNER TO "Regress Upg Owner";
GRANT SELECT ON :meta TO regress_upg_monitor;
ALTER TABLE :meta SET (fillfactor = 95);
ALTER EXTENSION lwwsync UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'lwwsync';
-- The same objects as a fresh install.
(SELECT * FROM members() EXCEPT SELECT * FROM fresh_members)
UNION ALL (SELECT * FROM fresh_members EXCEPT SELECT * FROM members());
-- Metadata is its owner's now; the data and the metadata survived.
SELECT has_table_privilege('regress_upg_reader', :'meta', 'SELECT') AS meta_public_in_03;
SELECT * FROM t ORDER BY id;
-- 0.5: captured per statement (transition tables, ALWAYS), row by row in
-- replica mode only, in which lww_apply writes (REPLICA).
SELECT tgname, tgenabled, tgtype & 1 = 1 AS per_row
  FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[0].rows[*].key[0]') AS keys;
-- 0.8: each row's metadata packed into st; what the columns held, byte for
-- byte, and the feed's index on its seq.
SELECT k0, f.* FROM :meta, lwwsync.meta_fields(st) f ORDER BY k0;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = :'meta'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT replace(indexdef, 't'::regclass::oid::text, 'OID') AS indexdef
  FROM pg_indexes WHERE schemaname = 'lwwsync' AND tablename = 'm_' || 't'::regclass::oid ORDER BY 1;
-- The rewritten table kept them.
SELECT pg_get_userbyid(relowner) AS meta_owner, reloptions,
       has_table_privilege('regress_upg_monitor', :'meta', 'SELECT') AS monitor_reads
  FROM pg_class WHERE oid = :'meta'::regclass;
ALTER TABLE :meta OWNER TO CURRENT_USER;
SELECT jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[0].rows[*] ? (@.key[0] == 2)') AS row_2;
-- The 0.2 cursor waits, without a principal, for its node's principal to claim it.
SELECT node, role, subject, received FROM lwwsync.peers;
SELECT lww_seq() AS before \gset
UPDATE t SET v = 'uno' WHERE id = 1;
SELECT jsonb_path_query_array(lww_changes(:before)::jsonb, '$.tables[0].rows[*].key[0]') AS changed_after_upgrade;
-- 0.4: registers know their attributes, and the event trigger follows ALTER TABLE.
SELECT columns, attnums FROM lwwsync.tables WHERE name = 't';
ALTER TABLE t ADD COLUMN w text DEFAULT 'x';
ALTER TABLE t RENAME COLUMN v TO v2;
SELECT columns, attnums FROM lwwsync.tables WHERE name = 't';
SELECT lww_seq() AS before \gset
INSERT INTO t VALUES (3, 'three', 'y');
SELECT jsonb_path_query_array(lww_changes(:before)::jsonb, '$.tables[0].columns') AS columns_sent;
-- 0.6: the conflict log, readable by the database's owner.
SELECT has_table_privilege('regress_upg_reader', 'lww_conflicts', 'SELECT') AS reader_sees_conflicts;

-- A database not yet updated to 0.6 has no conflict log to switch on.
SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync VERSION '0.5';
SELECT lww_config('conflict_log', 1);
ALTER EXTENSION lwwsync UPDATE;
SELECT lww_config('conflict_log', 1);
SELECT lww_config('conflict_log', 0);

SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
RESET client_min_messages;
DROP TABLE t, fresh_members;
DROP FUNCTION members();
DROP ROLE regress_upg_reader, "Regress Upg Owner", regress_upg_monitor;
CREATE EXTENSION lwwsync;
