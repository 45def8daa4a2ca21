-- lwwsync 0.4 -> 0.5
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.5'" to load this file. \quit

-- issue 10: caches
-- Each backend caches table descriptions, settings and node ids across
-- transactions (pg_ext/src/state.h). A write to what they come from sends a
-- relcache invalidation of that table; every backend drops the dependent
-- cache at its next transaction. ENABLE ALWAYS: writes in replica mode count.
CREATE FUNCTION lwwsync.lww_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'lww_invalidate' LANGUAGE C;
CREATE TRIGGER lwwsync_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lwwsync.tables
    FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_invalidate();
ALTER TABLE lwwsync.tables ENABLE ALWAYS TRIGGER lwwsync_invalidate;
-- The clock lww_apply persists ('hlc') changes often and is read once per
-- transaction instead: its writes invalidate nothing.
CREATE TRIGGER lwwsync_invalidate AFTER INSERT OR UPDATE ON lwwsync.state
    FOR EACH ROW WHEN (NEW.key <> 'hlc') EXECUTE FUNCTION lwwsync.lww_invalidate();
CREATE TRIGGER lwwsync_invalidate_all AFTER DELETE OR TRUNCATE ON lwwsync.state
    FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_invalidate();
ALTER TABLE lwwsync.state ENABLE ALWAYS TRIGGER lwwsync_invalidate, ENABLE ALWAYS TRIGGER lwwsync_invalidate_all;
-- A node's index never changes, except index 0 (lww_reset_node); new nodes
-- invalidate nothing: a backend looks an unknown index up.
CREATE TRIGGER lwwsync_invalidate AFTER UPDATE OR DELETE ON lwwsync.nodes
    FOR EACH ROW WHEN (OLD.idx = 0) EXECUTE FUNCTION lwwsync.lww_invalidate();
CREATE TRIGGER lwwsync_invalidate_all AFTER TRUNCATE ON lwwsync.nodes
    FOR EACH STATEMENT EXECUTE FUNCTION lwwsync.lww_invalidate();
ALTER TABLE lwwsync.nodes ENABLE ALWAYS TRIGGER lwwsync_invalidate, ENABLE ALWAYS TRIGGER lwwsync_invalidate_all;

-- SPI statements this backend ran: tests count them (sql/fleet.sql).
CREATE FUNCTION lwwsync.statement_count() RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_statement_count' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION lwwsync.statement_count() FROM PUBLIC;

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
