-- lwwsync 0.6 -> 0.7
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.7'" to load this file. \quit

-- issue 11: tombstone purge with a horizon (docs/PROTOCOL.md, "Purge and
-- re-snapshot"). Removes the tombstones stamped more than older_than_ms ago
-- (default lww_config('tombstone_ttl_ms'), 30 days) that every server this
-- database pushes to holds, and returns how many; a peer whose cursor on
-- this database is older than the highest purged sequence re-snapshots
-- before it syncs again. The same purge runs by itself during sync. The
-- horizon lives in lwwsync.state ('purged_upto').
CREATE FUNCTION lww_purge(older_than_ms bigint DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_purge' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION lww_purge(bigint) FROM PUBLIC;

-- The purge's own bookkeeping (when it last ran, its age marks, the
-- horizon, what each server holds of ours) is read where it is used, not
-- cached: its writes invalidate nothing. The generation floor of a table
-- ('genfloor:<oid>') is cached with the settings and still does.
DROP TRIGGER lwwsync_invalidate ON lwwsync.state;
CREATE TRIGGER lwwsync_invalidate AFTER INSERT OR UPDATE ON lwwsync.state
    FOR EACH ROW WHEN (NEW.key <> 'hlc' AND NEW.key NOT IN ('purged_at', 'purge_marks', 'purged_upto')
                       AND NEW.key NOT LIKE 'upstream:%')
    EXECUTE FUNCTION lwwsync.lww_invalidate();
ALTER TABLE lwwsync.state ENABLE ALWAYS TRIGGER lwwsync_invalidate;
