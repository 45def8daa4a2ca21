-- lwwsync 0.4 -> 0.5
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.5'" to load this file. \quit

-- issue 10: capture
-- Local writes are captured per statement: one AFTER ... FOR EACH STATEMENT
-- trigger per event reads the statement's rows from its transition tables
-- and stamps them with one metadata read and one metadata write. The row
-- trigger stays for session_replication_role = replica, in which lww_apply
-- writes (it tells the merge's own write from every other): ENABLE REPLICA,
-- it costs nothing otherwise (docs/ARCHITECTURE.md, "Capture").
CREATE FUNCTION lwwsync.lww_capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'lww_capture' LANGUAGE C;

-- Tracked tables get the same triggers lww_track creates (track.cpp,
-- install_capture_triggers); a table in an inheritance tree keeps the row
-- trigger alone, ALWAYS.
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM lwwsync.tables AS l JOIN pg_catalog.pg_class AS c ON c.oid = l.relid
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits AS i WHERE c.oid IN (i.inhrelid, i.inhparent))
    LOOP
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER lwwsync_capture_ins AFTER INSERT ON %s'
            ' REFERENCING NEW TABLE AS lww_new FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_capture()', t);
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER lwwsync_capture_upd AFTER UPDATE ON %s'
            ' REFERENCING OLD TABLE AS lww_old NEW TABLE AS lww_new FOR EACH STATEMENT'
            ' EXECUTE FUNCTION lwwsync.lww_capture()', t);
        EXECUTE pg_catalog.format('CREATE OR REPLACE TRIGGER lwwsync_capture_del AFTER DELETE ON %s'
            ' REFERENCING OLD TABLE AS lww_old FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_capture()', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE REPLICA TRIGGER lwwsync_capture,'
            ' ENABLE ALWAYS TRIGGER lwwsync_capture_ins, ENABLE ALWAYS TRIGGER lwwsync_capture_upd,'
            ' ENABLE ALWAYS TRIGGER lwwsync_capture_del', t);
    END LOOP;
END
$$;
