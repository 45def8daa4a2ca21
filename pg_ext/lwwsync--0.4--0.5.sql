-- lwwsync 0.4 -> 0.5: copies and restores (docs/PROTOCOL.md, "Copies and
-- restores"). A database restored from a dump or a backup, or a standby
-- promoted to primary, takes a new node id by itself; lww_reset_node()
-- takes one on demand.
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.5'" to load this file. \quit

-- Node ids this database used before: registers stamped by them (that
-- devices pulled before a failover or a restore, and push back) are taken
-- from any caller allowed to make the change, up to the clock at
-- retirement (docs/SECURITY.md).
CREATE TABLE lwwsync.retired (
    node uuid PRIMARY KEY,
    hlc bigint NOT NULL,            -- the clock when it was retired: later stamps of it are forged
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);

-- Server side: per caller node, the id of its push that last moved our
-- cursor on it (the caller checks it sent that push; a copy did not).
CREATE TABLE lwwsync.push_marks (node uuid PRIMARY KEY, id text NOT NULL);

-- Client side: ids of the recent pushes this database sent, per server.
CREATE TABLE lwwsync.pushes (
    n bigserial PRIMARY KEY,
    peer uuid NOT NULL,
    id text NOT NULL
);
CREATE INDEX pushes_peer_id ON lwwsync.pushes (peer, id);

-- A dump restored into another database keeps the metadata and the node
-- directory and drops the rows CREATE EXTENSION made itself (the node id it
-- minted stays, as the copy's new id); the old id travels as 'self_node',
-- and 'identity' says where it was minted (both written on first use), so
-- the restore finds out (pg_ext/src/state.cpp). Both sequences travel too:
-- sequences handed out after a restore stay above the restored metadata's.
SELECT pg_catalog.pg_extension_config_dump('lwwsync.state', 'WHERE key <> ''node_id''');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.nodes', 'WHERE idx <> 0');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.retired', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.seq', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.node_idx', '');

REVOKE ALL ON lwwsync.retired, lwwsync.push_marks, lwwsync.pushes FROM PUBLIC;

-- A new node id now (provisioning scripts, a clone made by other means):
-- every register this database stamped goes out under it; the old id stays
-- as a retired node. Returns the new id.
CREATE FUNCTION lww_reset_node() RETURNS uuid
    AS 'MODULE_PATHNAME', 'lww_reset_node' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION lww_reset_node() FROM PUBLIC;
