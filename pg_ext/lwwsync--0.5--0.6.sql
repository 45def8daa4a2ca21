-- lwwsync 0.5 -> 0.6
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.6'" to load this file. \quit

-- issue 11: the conflict log
-- With lww_config('conflict_log', 1), lww_apply (and every sync that
-- applies) records each conflict it settles: an incoming register older
-- than the one held here ('lost'), or one that replaced a write of this
-- database the sender had not received ('overwrote'). col NULL: the row
-- itself (an insert or a delete against the other side's edit; ours and
-- theirs are then "present" or "deleted"). Values as change sets carry
-- them (JSON), stamps as hlc and node id. At most
-- lww_config('conflict_log_rows') rows (default 10000), the oldest go first.
CREATE TABLE lwwsync.conflicts (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tbl text NOT NULL,
    key jsonb NOT NULL,
    col text,
    kind text NOT NULL CHECK (kind IN ('lost', 'overwrote')),
    ours jsonb,
    our_hlc bigint NOT NULL,
    our_node uuid NOT NULL,
    theirs jsonb,
    their_hlc bigint NOT NULL,
    their_node uuid NOT NULL
);
REVOKE ALL ON lwwsync.conflicts FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('lwwsync.conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.conflicts_id_seq', '');

-- What the app reads (and deletes from once shown). The conflicts concern
-- every writer of the database: readable by its owner and whom it grants.
CREATE VIEW lww_conflicts AS
    SELECT c.id, c.at, c.tbl, c.key, c.col, c.kind, c.ours, c.our_hlc, c.our_node,
           c.theirs, c.their_hlc, c.their_node
      FROM lwwsync.conflicts AS c;
REVOKE ALL ON lww_conflicts FROM PUBLIC;

-- issue 11: no echo
-- Per peer, the change sequences of rows merged from it that brought
-- registers stamped by a third node (a relay's, a server's other devices'):
-- the peer holds them, so what this database sends it skips them. Dropped
-- once the peer's cursor on this database is past them; not dumped (they
-- only save traffic).
CREATE TABLE lwwsync.relayed (
    node uuid NOT NULL,
    lo bigint NOT NULL,
    hi bigint NOT NULL,
    PRIMARY KEY (node, lo)
);
REVOKE ALL ON lwwsync.relayed FROM PUBLIC;
