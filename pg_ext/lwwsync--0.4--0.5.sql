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
