-- hostile: peers that are not honest (docs/SECURITY.md). Each block is an
-- attack that worked before lwwsync 0.3, with what now happens instead.
SELECT current_database() AS main_db \gset
CREATE ROLE regress_h_alice;
CREATE ROLE regress_h_bob;
CREATE ROLE regress_h_nogrant;
CREATE ROLE regress_h_relay;
CREATE ROLE regress_h_owner;
CREATE DATABASE lww_hostile;
\c lww_hostile
CREATE EXTENSION lwwsync;
\set VERBOSITY terse

-- Change sets and exchange requests, stamped now. Node ids are fixed so the
-- output is stable: a = alice's device, b = bob's, c = another server.
CREATE FUNCTION now_hlc() RETURNS bigint LANGUAGE sql AS
    $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16 $$;
CREATE FUNCTION node(c text) RETURNS text LANGUAGE sql AS
    $$ SELECT '00000000-0000-4000-8000-00000000000' || c $$;
CREATE FUNCTION cs(origin text, tbl text, cols text, rows text, nodes text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"1",'
                  '"nodes":[%s],"tables":[{"name":"%s","key":["id"],"columns":%s,"rows":[%s]}]}',
                  node(origin), coalesce(nodes, '"' || node(origin) || '"'), tbl, cols,
                  replace(rows, '$HLC', now_hlc()::text))
$$;
CREATE FUNCTION exchange(caller text, push text DEFAULT NULL, received text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,"node":"%s"%s%s}', node(caller),
                               CASE WHEN received IS NULL THEN '' ELSE ',"received":"' || received || '"' END,
                               CASE WHEN push IS NULL THEN '' ELSE ',"push":' || push END)::json)::jsonb
$$;
-- SQLSTATE and message of a statement, or 'ok' (this server's node id and
-- metadata table names masked: they differ between runs).
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(replace(SQLSTATE || ': ' || SQLERRM, lww_node_id()::text, '<server>'), 'm_[0-9]+', 'm_<oid>', 'g');
END
$$;
CREATE FUNCTION as_sub(sub text) RETURNS void LANGUAGE sql AS
    $$ SELECT set_config('request.jwt.claims', json_build_object('sub', sub)::text, false) $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;

CREATE TABLE notes(id int PRIMARY KEY, owner text, body text);
CREATE TABLE secret(id int PRIMARY KEY, v text);
SELECT lww_track('notes'), lww_track('secret');
INSERT INTO notes VALUES (1, 'regress_h_alice', 'a1'), (2, 'regress_h_bob', 'b1');
INSERT INTO secret VALUES (1, 'server only'), (5, 'five');
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO regress_h_alice, regress_h_bob;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes, secret TO regress_h_relay;
INSERT INTO lwwsync.relays VALUES ('regress_h_relay');

-- ------------------------------------------------ 0. no user code runs with the metadata owner's rights
-- A table owner's index predicate (an IMMUTABLE function, which planning
-- evaluates) would make its author superuser if it ever ran as the
-- metadata owner: through lww_track of the table, or any device's sync.
-- User tables are read and locked as their owner, in a restricted operation.
CREATE SCHEMA own AUTHORIZATION regress_h_owner;
SET ROLE regress_h_owner;
CREATE FUNCTION own.escalate() RETURNS void LANGUAGE plpgsql AS
    $$ BEGIN EXECUTE 'ALTER ROLE regress_h_owner SUPERUSER'; END $$;
CREATE FUNCTION own.pred() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE WARNING 'own.pred() runs as superuser %', current_user;
        PERFORM own.escalate();
    END IF;
    RETURN true;
END $$;
CREATE TABLE own.items(id int PRIMARY KEY, v text);
INSERT INTO own.items VALUES (1, 'x'), (2, 'y');
CREATE INDEX items_pred ON own.items(id) WHERE own.pred();
SELECT lww_track('own.items') AS stamped;
GRANT USAGE ON SCHEMA own TO regress_h_bob;
GRANT SELECT, INSERT, UPDATE, DELETE ON own.items TO regress_h_bob;
RESET ROLE;
SET ROLE regress_h_bob;
SELECT as_sub('bob-items');
SELECT exchange('9', format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"1","nodes":["%s"],'
    '"tables":[{"name":"own.items","key":["id"],"columns":["v"],"rows":[{"key":[1],"gen":1,"stamp":["%s",0],"cols":[[0,"hello"]]},'
    '{"key":[3],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"new"]]}]}]}',
    node('9'), node('9'), now_hlc(), now_hlc()))->'applied' AS synced;
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'regress_h_owner';
SET ROLE regress_h_owner;
SELECT * FROM own.items ORDER BY id;
RESET ROLE;
-- lww_untrack and lww_track again resume from the metadata (its rows probed
-- as the table's owner too; unchanged rows keep their stamps: none rewritten).
SET ROLE regress_h_owner;
SELECT lww_untrack('own.items'), lww_track('own.items') AS rewritten;
RESET ROLE;
SELECT rolsuper AS owner_became_superuser FROM pg_roles WHERE rolname = 'regress_h_owner';
SELECT lww_untrack('own.items');
SET client_min_messages = warning;
DROP SCHEMA own CASCADE;
RESET client_min_messages;
DELETE FROM lwwsync.bindings WHERE node = node('9')::uuid;
DELETE FROM lwwsync.peers WHERE node = node('9')::uuid;

-- ------------------------------------------------ 12. metadata is its owner's
-- Keys and stamps of every row (deleted ones too) are not readable by PUBLIC.
SELECT 'lwwsync.' || quote_ident('m_' || 'secret'::regclass::oid) AS secret_meta \gset
SET ROLE regress_h_nogrant;
SELECT try(format('SELECT count(*) FROM %s', :'secret_meta')) AS read_secret_meta;
SELECT try('SELECT count(*) FROM lwwsync.bindings') AS read_bindings;
-- Nor through lww_apply: a stale register (hlc 1) would be "ignored" where a
-- row exists at a higher generation or stamp, and "applied" elsewhere; a role
-- that may not write the table gets no answer at all.
SELECT try(format('SELECT lww_apply(%L)', cs('d', 'secret', '["v"]', '{"key":[5],"gen":1,"stamp":["1",0],"cols":[[0,"probe"]]}'))) AS probe;
RESET ROLE;

-- ------------------------------------------------ 13. a pull skips what the caller may not read
-- Alice has no grant on secret: her pull carries notes, and does not fail.
SET ROLE regress_h_alice;
SELECT as_sub('alice');
SELECT t->>'name' AS pulled_table, jsonb_array_length(t->'rows') AS rows
  FROM jsonb_array_elements(exchange('a', NULL, '0')->'pull'->'tables') t;
RESET ROLE;

-- ------------------------------------------------ 3. tombstones need DELETE rights
-- A role with no grant on secret plants a tombstone for key 6 at a huge
-- generation (a dead-to-dead merge writes only metadata): refused.
SET ROLE regress_h_nogrant;
SELECT try(format('SELECT lww_apply(%L)',
    cs('d', 'secret', '["v"]', '{"key":[6],"gen":4294967294,"stamp":["$HLC",0],"row":true}'))) AS plant_tombstone;
-- Nor may it delete a living row, or write one.
SELECT try(format('SELECT lww_apply(%L)',
    cs('d', 'secret', '["v"]', '{"key":[5],"gen":2,"stamp":["$HLC",0],"row":true}'))) AS delete_row;
SELECT try(format('SELECT lww_apply(%L)',
    cs('d', 'secret', '["v"]', '{"key":[6],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}'))) AS insert_row;
RESET ROLE;
SELECT count(*) AS bound_nodes FROM lwwsync.bindings;  -- none: alice only pulled, the refused calls bound nothing
SELECT jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[*] ? (@.name == "secret").rows[*].key[0]') AS secret_keys;
-- Under row-level security, a tombstone for a key this server does not hold
-- cannot be judged by any policy: it is rejected, not kept.
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notes USING (owner = current_user) WITH CHECK (owner = current_user);
SET ROLE regress_h_alice;
SELECT as_sub('alice');
SELECT exchange('a', cs('a', 'notes', '["owner","body"]', '{"key":[9],"gen":2,"stamp":["$HLC",0],"row":true}'))->'applied' AS applied;
-- Bob's row is invisible to her: she cannot delete or change it either. A
-- row row-level security hides is rejected whole, whatever the merge would
-- do (so the answer tells nothing of its stamps), and the rest applies.
SELECT exchange('a', cs('a', 'notes', '["owner","body"]', '{"key":[2],"gen":2,"stamp":["$HLC",0],"row":true}'))->'applied' AS delete_bobs;
SELECT exchange('a', cs('a', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"defaced"]]}'))->'applied' AS update_bobs;
SELECT exchange('a', cs('a', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["1",0],"cols":[[1,"stale"]]}'))->'applied' AS stale_on_bobs;
RESET ROLE;
SELECT jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[*] ? (@.name == "notes").rows[*].key[0]') AS notes_keys;
SELECT * FROM notes ORDER BY id;

-- ------------------------------------------------ 4. a node id is its first principal's
-- Alice's device synced first (above). Bob, or another token of the same
-- role, naming her node is refused, and her cursor does not move.
SELECT received AS alice_cursor FROM lwwsync.peers WHERE node = node('a')::uuid \gset
SET ROLE regress_h_bob;
SELECT as_sub('bob');
SELECT try(format('SELECT exchange(%L, %L)', 'a',
    '{"format":"lwwsync.changeset","version":1,"origin":"' || node('a') ||
    '","since":"0","upto":"9223372036854775807","nodes":[],"tables":[]}')) AS hijack_cursor;
RESET ROLE;
SET ROLE regress_h_alice;
SELECT as_sub('mallory');
SELECT try($$SELECT exchange('a', NULL, '0')$$) AS same_role_other_subject;
RESET ROLE;
SELECT received = :'alice_cursor' AS cursor_unchanged FROM lwwsync.peers WHERE node = node('a')::uuid;
-- Cursors are kept per (node, principal).
SELECT node = node('a')::uuid AS alice_node, role, subject FROM lwwsync.peers ORDER BY role, subject;
SELECT node = node('a')::uuid AS alice_node, role, subject FROM lwwsync.bindings ORDER BY role, subject;
-- A node id derived from a secret key (what SQLite clients make) cannot be
-- taken by whoever saw it: syncing as it needs the key.
CREATE FUNCTION keyed_node(key bytea) RETURNS text LANGUAGE sql AS $$
    SELECT encode(set_byte(set_byte(d, 6, (get_byte(d, 6) & 15) | 128), 8, (get_byte(d, 8) & 63) | 128), 'hex')::uuid::text
      FROM (SELECT substring(sha256('lwwsync node key'::bytea || '\x00'::bytea || key) FROM 1 FOR 16) AS d) s
$$;
CREATE FUNCTION keyed_hello(key bytea, claimed text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,"node":"%s"%s}', coalesce(claimed, keyed_node(key)),
        CASE WHEN key IS NULL THEN '' ELSE ',"node_key":"' || encode(key, 'base64') || '"' END)::json)->>'acked'
$$;
GRANT EXECUTE ON FUNCTION keyed_node(bytea), keyed_hello(bytea, text) TO PUBLIC;
SELECT substr(keyed_node('\x0101010101010101010101010101010101010101010101010101010101010101'), 15, 1) AS uuid_version;
SET ROLE regress_h_alice;
SELECT as_sub('alice');
SELECT keyed_hello('\x0101010101010101010101010101010101010101010101010101010101010101') AS alice_phone;
RESET ROLE;
SET ROLE regress_h_bob;
SELECT as_sub('bob');
SELECT try(format('SELECT keyed_hello(NULL, %L)', keyed_node('\x0101010101010101010101010101010101010101010101010101010101010101'))) AS without_key;
SELECT try(format('SELECT keyed_hello(%L, %L)', '\x0202020202020202020202020202020202020202020202020202020202020202',
    keyed_node('\x0101010101010101010101010101010101010101010101010101010101010101'))) AS wrong_key;
SELECT try(format('SELECT lww_apply(%L)', replace(cs('a', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"x"]]}'),
    node('a'), keyed_node('\x0303030303030303030303030303030303030303030303030303030303030303')))) AS apply_as_unseen_keyed_node;
RESET ROLE;

-- lww_apply is acting as the origin node too: bob may not apply alice's set.
SET ROLE regress_h_bob;
SELECT as_sub('bob');
SELECT try(format('SELECT lww_apply(%L)',
    cs('a', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"b2"]]}'))) AS apply_as_alice;

-- ------------------------------------------------ 5. nobody pushes another principal's stamps
-- Bob's own node, carrying a register stamped by alice's node: a forgery the
-- server would keep and alice's device would never pull back. Rejected (not
-- merged), the rest of the set applies: an honest client only echoes other
-- nodes' registers, and echoes never win.
SELECT exchange('b', cs('b', 'notes', '["owner","body"]',
       '{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"forged",' || '"' || (now_hlc() + 1000) || '",1]]}',
       format('"%s","%s"', node('b'), node('a'))))->'applied' AS forged_stamp;
-- This server's own node is nobody's to stamp with, and neither is a node
-- bound to nobody (a device known here only through a relay).
SELECT exchange('b', cs('b', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",1],"cols":[[1,"forged"]]}',
       format('"%s","%s"', node('b'), lww_node_id())))->'applied' AS server_stamp;
SELECT exchange('b', cs('b', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",1],"cols":[[1,"forged"]]}',
       format('"%s","%s"', node('b'), node('f'))))->'applied' AS unbound_stamp;
-- A principal's other device is its own: bob's second device 7 relays 7's
-- write through device b. (7's first push bound it: a pull binds nothing.)
SELECT exchange('7', format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"0",'
                            '"nodes":[],"tables":[]}', node('7')), '0')->>'acked' AS device_7_bound;
SELECT exchange('b', cs('b', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",1],"cols":[[1,"from 7"]]}',
       format('"%s","%s"', node('b'), node('7'))))->'applied' AS own_device;
-- Echoes of registers this server holds are fine: they change nothing
-- (alice's row, hidden from bob, is rejected whole).
RESET ROLE;
SELECT lww_changes(0)::jsonb AS server_changes \gset
SET ROLE regress_h_bob;
SELECT as_sub('bob');
SELECT exchange('b', jsonb_set(jsonb_set(:'server_changes'::jsonb, '{origin}', to_jsonb(node('b'))),
                               '{tables}', (SELECT jsonb_agg(t) FROM jsonb_array_elements(:'server_changes'::jsonb->'tables') t
                                            WHERE t->>'name' = 'notes'))::text)->'applied' AS echo;
-- His own write within the policy goes through.
SELECT exchange('b', cs('b', 'notes', '["owner","body"]', '{"key":[2],"gen":1,"stamp":["$HLC",0],"cols":[[1,"b2"]]}'))->'applied' AS own_write;
RESET ROLE;
SELECT * FROM notes ORDER BY id;
ALTER TABLE notes DISABLE ROW LEVEL SECURITY;
-- A relay (another lwwsync server) forwards anyone's registers, and applies
-- sets of any origin without binding it.
SET ROLE regress_h_relay;
SELECT as_sub('');
SELECT lww_apply(cs('c', 'notes', '["owner","body"]',
    '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[1,"relayed",' || '"' || (now_hlc() + 1000) || '",1]]}',
    format('"%s","%s"', node('c'), node('a'))))->'applied' AS relayed;
RESET ROLE;
SELECT body FROM notes WHERE id = 1;
SELECT count(*) AS c_bound FROM lwwsync.bindings WHERE node = node('c')::uuid;

-- ------------------------------------------------ 6. generations never overflow
-- One register may raise a row's generation by at most 2^32.
SELECT try(format('SELECT lww_apply(%L)',
    cs('c', 'secret', '["v"]', '{"key":[7],"gen":9007199254740991,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}'))) AS jump;
-- A row at the last generation (planted before these bounds) refuses a
-- local delete with a clear error instead of writing 2^53, which every peer
-- would refuse forever.
INSERT INTO secret VALUES (7, 'seven');
-- (st starts with the row's seq and generation as varints: 1 is one byte,
-- 2^53 - 1 eight.)
DO $$
DECLARE
    m text := format('lwwsync.%I', 'm_' || 'secret'::regclass::oid);
    s bytea;
    n int;
BEGIN
    EXECUTE format('SELECT st FROM %s WHERE k0 = 7', m) INTO s;
    n := (SELECT min(i) + 1 FROM generate_series(0, 9) AS i WHERE get_byte(s, i) < 128);  -- the seq's bytes
    EXECUTE format('UPDATE %s SET st = $1 WHERE k0 = 7', m)
        USING substring(s FROM 1 FOR n) || '\xffffffffffffff0f'::bytea || substring(s FROM n + 2);
END
$$;
SELECT lwwsync.meta_gen(st) AS planted_gen FROM :secret_meta WHERE k0 = 7;
SELECT try('DELETE FROM secret WHERE id = 7') AS delete_at_limit;
SELECT v FROM secret WHERE id = 7;

-- A new generation over a living row deletes and re-inserts it: only who
-- may delete it (policies included) may do that. Shared editing: anyone
-- updates, only the owner deletes. (Repeating the row in one set to raise
-- its generation again and again is malformed.)
CREATE TABLE shared(id int PRIMARY KEY, owner text NOT NULL, body text);
SELECT lww_track('shared');
GRANT SELECT, INSERT, UPDATE, DELETE ON shared TO regress_h_alice, regress_h_bob;
ALTER TABLE shared ENABLE ROW LEVEL SECURITY;
CREATE POLICY sel ON shared FOR SELECT USING (true);
CREATE POLICY ins ON shared FOR INSERT WITH CHECK (owner = current_user);
CREATE POLICY upd ON shared FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY del ON shared FOR DELETE USING (owner = current_user);
CREATE FUNCTION shared_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'app trigger: % of row %', TG_OP, OLD.id; RETURN OLD; END $$;
CREATE TRIGGER shared_audit BEFORE DELETE ON shared FOR EACH ROW EXECUTE FUNCTION shared_audit();
INSERT INTO shared VALUES (1, 'regress_h_alice', 'alice''s'), (2, 'regress_h_bob', 'bob''s');
SET ROLE regress_h_bob;
SELECT as_sub('bob');
SELECT exchange('b', cs('b', 'shared', '["owner","body"]', '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[1,"edited by bob"]]}'))->'applied' AS edit;
-- (Refused, parked in bob's lww_rejected: the rest of his push would apply.)
SELECT exchange('b', cs('b', 'shared', '["owner","body"]',
    '{"key":[1],"gen":4294967297,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_h_alice"],[1,"frozen"]]}'))->'applied' AS new_generation_of_alices;
SELECT "table", key, reason FROM lww_rejected;
SELECT try(format('SELECT exchange(%L, %L)', 'b', cs('b', 'shared', '["owner","body"]',
    '{"key":[2],"gen":3,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_h_bob"],[1,"again"]]},'
    '{"key":[2],"gen":5,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_h_bob"],[1,"again"]]}'))) AS key_twice;
-- His own row he may delete, so he may re-insert it at a new generation.
SELECT exchange('b', cs('b', 'shared', '["owner","body"]',
    '{"key":[2],"gen":3,"stamp":["$HLC",0],"row":true,"cols":[[0,"regress_h_bob"],[1,"reborn"]]}'))->'applied' AS own_new_generation;
RESET ROLE;
SELECT * FROM shared ORDER BY id;

-- ------------------------------------------------ node ids are recorded for registers kept, only
SELECT count(*) AS nodes_before FROM lwwsync.nodes \gset
SET ROLE regress_h_alice;
SELECT as_sub('alice');
SELECT exchange('a', format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"1","nodes":[%s],'
    '"tables":[{"name":"notes","key":["id"],"columns":["owner","body"],"rows":[%s]}]}', node('a'),
    (SELECT string_agg('"' || gen_random_uuid() || '"', ',') FROM generate_series(1, 500)),
    (SELECT string_agg(format('{"key":[%s],"gen":1,"stamp":["1",%s],"cols":[[1,"stale"]]}', 100 + i, i - 1), ',')
       FROM generate_series(1, 500) i)))->'applied' AS registers_of_500_unknown_nodes;
RESET ROLE;
SELECT count(*) - :nodes_before AS nodes_recorded FROM lwwsync.nodes;

-- ------------------------------------------------ one row, one spelling
-- Locks follow the key as stored, and one row named twice (1 and "1", two
-- cases of one uuid) is malformed: two applies could lock in opposite orders.
SELECT try(format('SELECT lww_apply(%L)', cs('c', 'secret', '["v"]',
    '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"a"]]},{"key":["1"],"gen":1,"stamp":["$HLC",0],"cols":[[0,"b"]]}'))) AS int_twice;
CREATE TABLE u(id uuid PRIMARY KEY, v text);
SELECT lww_track('u');
SELECT try(format('SELECT lww_apply(%L)', replace(cs('c', 'u', '["v"]',
    '{"key":["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"a"]]},'
    '{"key":["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"b"]]}'), '', ''))) AS uuid_twice;

-- ------------------------------------------------ 8. one register per column
SELECT try(format('SELECT lww_apply(%L)',
    cs('c', 'secret', '["v"]', format('{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"x_winner","%s",0],[0,"y_loser","%s",0]]}',
       now_hlc() + 10, now_hlc() + 5)))) AS two_registers;
SELECT try(format('SELECT lww_apply(%L)',
    cs('c', 'secret', '["v","v"]', '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"x"]]}'))) AS column_twice;
SELECT try(format('SELECT lww_apply(%L)',
    cs('c', 'secret', '["id"]', '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"x"]]}'))) AS key_as_column;

-- ------------------------------------------------ bounds on every number
SELECT try(format('SELECT lww_apply(%L)', replace(cs('c', 'secret', '["v"]',
    '{"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"x"]]}'), '"upto":"1"', '"upto":"9223372036854775808"'))) AS upto_2_63;
SELECT try(format('SELECT lww_apply(%L)', cs('c', 'secret', '["v"]',
    '{"key":[1],"gen":1,"stamp":["18446744073709551615",0],"cols":[[0,"x"]]}'))) AS stamp_2_64;
SELECT try($$SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-00000000000e","clock":"18446744073709551615"}')$$) AS clock_2_64;
SELECT try($$SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-00000000000e","received":"9223372036854775808"}')$$) AS cursor_2_63;
-- float4 takes what its own input function takes.
CREATE TABLE f(id int PRIMARY KEY, r real);
SELECT lww_track('f');
SELECT try(format('SELECT lww_apply(%L)', cs('c', 'f', '["r"]', '{"key":[1],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"real":1e300}]]}'))) AS real_overflow;
SELECT try(format('SELECT lww_apply(%L)', cs('c', 'f', '["r"]', '{"key":[1],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"real":1e-300}]]}'))) AS real_underflow;
SELECT count(*) AS stored FROM f;

-- ------------------------------------------------ 14. lww_sync_status() is not fooled
-- Any session can leave "lww_sync progress: {…}" as its query text (a
-- statement that fails to parse stays there while the session idles). It
-- shows no fake sync, and a broken one does not make the function fail.
CREATE EXTENSION dblink;
SELECT dblink_connect('fake', format('dbname=%s host=%s port=%s', current_database(),
                      current_setting('unix_socket_directories'), current_setting('port')));
SELECT try($$SELECT dblink_exec('fake', 'lww_sync progress: {"url":"https://fake.example/","stats":{"batches":99}}')$$) LIKE '42601:%' AS fake_sent;
SELECT count(*) AS syncs FROM lww_sync_status();
SELECT try($$SELECT dblink_exec('fake', 'lww_sync progress: {not json}')$$) LIKE '42601:%' AS broken_sent;
SELECT count(*) AS syncs FROM lww_sync_status();
SELECT dblink_disconnect('fake');

-- ------------------------------------------------ 1. no pointer into a rebuilt cache
-- A user trigger on x rolls back a savepoint for every row (which makes
-- lwwsync reload its table list) and tracks a new table a0 mid-apply (which
-- sorts first, shifting every other table). Rows meant for x land in x.
CREATE TABLE b1(id int PRIMARY KEY, v text);
CREATE TABLE b2(id int PRIMARY KEY, v text);
CREATE TABLE b3(id int PRIMARY KEY, v text);
CREATE TABLE b4(id int PRIMARY KEY, v text);
CREATE TABLE x(id int PRIMARY KEY, v text);
CREATE TABLE a0(id int PRIMARY KEY, v text);
SELECT lww_track('b1') + lww_track('b2') + lww_track('b3') + lww_track('b4') + lww_track('x') AS tracked;
CREATE FUNCTION x_side_effects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN NULL;
    END;
    IF NEW.id = 100 THEN PERFORM lww_track('a0'); END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER x_side_effects AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION x_side_effects();
-- (ALWAYS: lww_apply runs with session_replication_role = replica, where only
-- ALWAYS and REPLICA triggers of the app fire.)
ALTER TABLE x ENABLE ALWAYS TRIGGER x_side_effects;
SELECT lww_apply(cs('c', 'x', '["v"]', (SELECT string_agg(format('{"key":[%s],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x%s"]]}', i, i), ',')
                                         FROM generate_series(1, 400) i)))->'applied' AS applied;
SELECT (SELECT count(*) FROM x) AS x, (SELECT count(*) FROM b1) + (SELECT count(*) FROM b2)
     + (SELECT count(*) FROM b3) + (SELECT count(*) FROM b4) AS elsewhere,
       (SELECT count(*) FROM lwwsync.tables WHERE name = 'a0') AS a0_tracked;
SELECT count(*) FILTER (WHERE v = 'x' || id) AS right_values FROM x;

\c :main_db
DROP DATABASE lww_hostile;
DROP ROLE regress_h_alice, regress_h_bob, regress_h_nogrant, regress_h_relay, regress_h_owner;
