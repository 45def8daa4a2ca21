-- apply_life: lww_apply in foreign-key order, with the app's triggers quiet
-- (as logical replication's apply), and rows the receiver cannot apply
-- parked in lww_rejected instead of failing the sync (issue 9, parts 3+4).
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_life;
\c lww_life
CREATE EXTENSION lwwsync;

-- A current stamp (hlc = unix ms << 16), a little later on every call.
CREATE SEQUENCE tick;
CREATE FUNCTION now_hlc() RETURNS text LANGUAGE sql AS
$$ SELECT (((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16) + nextval('tick'))::text $$;
-- A change set of node a1 around some tables (jsonb), stamps filled in.
CREATE FUNCTION cs(tables jsonb, origin text DEFAULT '00000000-0000-4000-8000-0000000000a1')
RETURNS text LANGUAGE sql AS $$
    SELECT jsonb_build_object('format', 'lwwsync.changeset', 'version', 1, 'origin', origin,
                              'since', '0', 'upto', '1', 'nodes', jsonb_build_array(origin), 'tables', tables)::text
$$;
CREATE FUNCTION tbl(name text, cols text[], rows jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('name', name, 'key', jsonb_build_array('id'), 'columns', to_jsonb(cols), 'rows', rows)
$$;
-- A row alive at generation gen with values for the columns (in order).
CREATE FUNCTION live(id int, vals jsonb, gen int DEFAULT 1) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('key', jsonb_build_array(id), 'gen', gen, 'stamp', jsonb_build_array(now_hlc(), 0),
                              'row', true,
                              'cols', (SELECT coalesce(jsonb_agg(jsonb_build_array(i - 1, v) ORDER BY i), '[]')
                                         FROM jsonb_array_elements(vals) WITH ORDINALITY AS e(v, i)))
$$;
CREATE FUNCTION dead(id int, gen int DEFAULT 2) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('key', jsonb_build_array(id), 'gen', gen, 'stamp', jsonb_build_array(now_hlc(), 0), 'row', true)
$$;
CREATE FUNCTION stats(j jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT format('applied %s, rejected %s', j->'applied', j->'rejected')
$$;
-- The rows of `t` that lww_changes(since) carries: key, generation, whether
-- this node stamped the row register (local), and the columns as
-- [index, value, stamped here] (null: the row's stamp).
CREATE FUNCTION feed(since bigint, t text) RETURNS TABLE (key jsonb, gen int, local boolean, cols jsonb)
LANGUAGE sql AS $$
    WITH c AS (SELECT lww_changes(since)::jsonb AS c),
         me AS (SELECT i - 1 AS idx FROM c, jsonb_array_elements_text(c->'nodes') WITH ORDINALITY n(id, i)
                 WHERE id::uuid = lww_node_id())
    SELECT r->'key', (r->>'gen')::int, (r->'stamp'->>1)::int = (SELECT idx FROM me),
           (SELECT coalesce(jsonb_agg(jsonb_build_array(x->0, x->1,
                   CASE WHEN jsonb_array_length(x) > 2 THEN (x->>3)::int = (SELECT idx FROM me) END)), '[]')
              FROM jsonb_array_elements(r->'cols') x)
    FROM c, jsonb_array_elements(c->'tables') tb, jsonb_array_elements(tb->'rows') r
    WHERE tb->>'name' = t ORDER BY 1
$$;

-- ---------------------------------------------------------------- 1. foreign-key order
-- A chain fa <- fb <- fc (fc cascades from fb), non-deferrable.
CREATE TABLE fa(id int PRIMARY KEY, v text);
CREATE TABLE fb(id int PRIMARY KEY, a int NOT NULL REFERENCES fa, v text);
CREATE TABLE fc(id int PRIMARY KEY, b int NOT NULL REFERENCES fb ON DELETE CASCADE, v text);
SELECT lww_track('fa') + lww_track('fb') + lww_track('fc') AS tracked;
-- One set, children listed first: parents are written first.
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('fc', '{b,v}', jsonb_build_array(live(1, '[1, "c1"]'))),
    tbl('fb', '{a,v}', jsonb_build_array(live(1, '[1, "b1"]'))),
    tbl('fa', '{v}', jsonb_build_array(live(1, '["a1"]')))))));
SELECT (SELECT count(*) FROM fa) AS fa, (SELECT count(*) FROM fb) AS fb, (SELECT count(*) FROM fc) AS fc;
-- One set of deletes, parents listed first: children are deleted first.
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('fa', '{v}', jsonb_build_array(dead(1))),
    tbl('fb', '{a,v}', jsonb_build_array(dead(1))),
    tbl('fc', '{b,v}', jsonb_build_array(dead(1)))))));
SELECT (SELECT count(*) FROM fa) AS fa, (SELECT count(*) FROM fb) AS fb, (SELECT count(*) FROM fc) AS fc;

-- Every order of delivery, one table per set: a child that comes before its
-- parent is parked, and applied by the apply that brings the parent.
CREATE FUNCTION deliver(sets text[], ord int[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    i int;
    trail text := '';
BEGIN
    FOREACH i IN ARRAY ord LOOP
        trail := trail || (lww_apply(sets[i])->>'rejected') || ' ';
    END LOOP;
    RETURN format('parked on the way: %s-> fa %s fb %s fc %s, still parked %s', trail,
                  (SELECT count(*) FROM fa), (SELECT count(*) FROM fb), (SELECT count(*) FROM fc),
                  (SELECT count(*) FROM lww_rejected));
END
$$;
CREATE FUNCTION perms() RETURNS SETOF int[] LANGUAGE sql AS $$
    VALUES ('{1,2,3}'::int[]), ('{1,3,2}'), ('{2,1,3}'), ('{2,3,1}'), ('{3,1,2}'), ('{3,2,1}')
$$;
SELECT g, o AS inserts_in_order, deliver(ARRAY[
        cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(live(g, '["a"]', 1))))),
        cs(jsonb_build_array(tbl('fb', '{a,v}', jsonb_build_array(live(g, jsonb_build_array(g, 'b'), 1))))),
        cs(jsonb_build_array(tbl('fc', '{b,v}', jsonb_build_array(live(g, jsonb_build_array(g, 'c'), 1)))))], o)
  FROM (SELECT (row_number() OVER () + 10)::int AS g, p AS o FROM perms() p) x ORDER BY g;
-- Deletes of those chains, in every order (fa before fb: parked until fb is
-- gone; fb before fc: fc goes with it by the cascade, a local delete).
SELECT g, o AS deletes_in_order, deliver(ARRAY[
        cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(dead(g))))),
        cs(jsonb_build_array(tbl('fb', '{a,v}', jsonb_build_array(dead(g))))),
        cs(jsonb_build_array(tbl('fc', '{b,v}', jsonb_build_array(dead(g)))))], o)
  FROM (SELECT (row_number() OVER () + 10)::int AS g, p AS o FROM perms() p) x ORDER BY g;
SELECT * FROM lww_rejected;

-- The cascade of a merged delete is a local write: captured, so it reaches every peer.
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('fa', '{v}', jsonb_build_array(live(30, '["a"]', 3))),
    tbl('fb', '{a,v}', jsonb_build_array(live(30, '[30, "b"]', 3))),
    tbl('fc', '{b,v}', jsonb_build_array(live(30, '[30, "c"]', 3), live(31, '[30, "c"]', 3)))))));
SELECT lww_seq() AS s0 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fb', '{a,v}', jsonb_build_array(dead(30, 4)))))));
SELECT * FROM feed(:s0, 'fc');
SELECT * FROM feed(:s0, 'fb');

-- The same chain with deferrable keys (ON DELETE SET NULL at the bottom), in
-- every order of delivery.
CREATE TABLE ga(id int PRIMARY KEY, v text);
CREATE TABLE gb(id int PRIMARY KEY, a int NOT NULL REFERENCES ga DEFERRABLE INITIALLY DEFERRED, v text);
CREATE TABLE gc(id int PRIMARY KEY, b int REFERENCES gb ON DELETE SET NULL DEFERRABLE, v text);
SELECT lww_track('ga') + lww_track('gb') + lww_track('gc') AS tracked;
CREATE FUNCTION deliver_g(sets text[], ord int[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    i int;
    trail text := '';
BEGIN
    FOREACH i IN ARRAY ord LOOP
        trail := trail || (lww_apply(sets[i])->>'rejected') || ' ';
    END LOOP;
    RETURN format('parked on the way: %s-> ga %s gb %s gc %s (gc.b null %s), still parked %s', trail,
                  (SELECT count(*) FROM ga), (SELECT count(*) FROM gb), (SELECT count(*) FROM gc),
                  (SELECT count(*) FROM gc WHERE b IS NULL), (SELECT count(*) FROM lww_rejected));
END
$$;
SELECT g, o AS inserts_in_order, deliver_g(ARRAY[
        cs(jsonb_build_array(tbl('ga', '{v}', jsonb_build_array(live(g, '["a"]', 1))))),
        cs(jsonb_build_array(tbl('gb', '{a,v}', jsonb_build_array(live(g, jsonb_build_array(g, 'b'), 1))))),
        cs(jsonb_build_array(tbl('gc', '{b,v}', jsonb_build_array(live(g, jsonb_build_array(g, 'c'), 1)))))], o)
  FROM (SELECT (row_number() OVER () + 10)::int AS g, p AS o FROM perms() p) x ORDER BY g;
-- Deletes: gb before gc sets gc.b to NULL (a local write), then gc's own
-- delete still wins the row.
SELECT g, o AS deletes_in_order, deliver_g(ARRAY[
        cs(jsonb_build_array(tbl('ga', '{v}', jsonb_build_array(dead(g))))),
        cs(jsonb_build_array(tbl('gb', '{a,v}', jsonb_build_array(dead(g))))),
        cs(jsonb_build_array(tbl('gc', '{b,v}', jsonb_build_array(dead(g)))))], o)
  FROM (SELECT (row_number() OVER () + 10)::int AS g, p AS o FROM perms() p) x ORDER BY g;
-- The SET NULL of a merged delete is captured (a local register of gc.b).
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('ga', '{v}', jsonb_build_array(live(30, '["a"]', 3))),
    tbl('gb', '{a,v}', jsonb_build_array(live(30, '[30, "b"]', 3))),
    tbl('gc', '{b,v}', jsonb_build_array(live(30, '[30, "c"]', 3)))))));
SELECT lww_seq() AS sg \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('gb', '{a,v}', jsonb_build_array(dead(30, 4)))))));
SELECT * FROM gc WHERE id = 30;
SELECT * FROM feed(:sg, 'gc');

-- Deferrable keys are checked at the end of the batch: two tables that
-- reference each other, both new in one set.
CREATE TABLE da(id int PRIMARY KEY, b int NOT NULL);
CREATE TABLE db(id int PRIMARY KEY, a int NOT NULL REFERENCES da DEFERRABLE);
ALTER TABLE da ADD FOREIGN KEY (b) REFERENCES db DEFERRABLE;
SELECT lww_track('da') + lww_track('db') AS tracked;
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('da', '{b}', jsonb_build_array(live(1, '[1]'))),
    tbl('db', '{a}', jsonb_build_array(live(1, '[1]')))))));
SELECT * FROM da, db;
-- A deferrable key still holds at the end: a row whose parent never comes is parked.
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('da', '{b}', jsonb_build_array(live(2, '[1]'), live(3, '[9]')))))));
SELECT id FROM da ORDER BY id;
SELECT "table", key, reason FROM lww_rejected;
DELETE FROM lww_rejected;  -- given up by the user

-- Self reference: rows listed children first, in one set (applied in rounds).
CREATE TABLE tree(id int PRIMARY KEY, parent int REFERENCES tree, v text);
SELECT lww_track('tree');
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('tree', '{parent,v}', jsonb_build_array(live(1, '[2, "leaf"]'), live(2, '[3, "mid"]'), live(3, '[null, "root"]')))))));
SELECT * FROM tree ORDER BY id;
-- Deleting the root alone: still referenced, parked; then the whole tree goes.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('tree', '{parent,v}', jsonb_build_array(dead(3)))))));
SELECT "table", key, reason FROM lww_rejected;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('tree', '{parent,v}', jsonb_build_array(dead(1), dead(2)))))));
SELECT * FROM tree ORDER BY id;
SELECT count(*) AS still_parked FROM lww_rejected;

-- A two-column key (checked for the whole batch at its end): the row whose
-- parent pair is missing is parked, the others apply.
CREATE TABLE pair(id int PRIMARY KEY, a int NOT NULL, b text NOT NULL, UNIQUE (a, b));
CREATE TABLE pair_ref(id int PRIMARY KEY, a int, b text, FOREIGN KEY (a, b) REFERENCES pair (a, b));
INSERT INTO pair VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'w');
SELECT lww_track('pair') + lww_track('pair_ref') AS tracked;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('pair_ref', '{a,b}', jsonb_build_array(
    live(1, '[1, "x"]'), live(2, '[2, "x"]'), live(3, '[2, "y"]'), live(4, '[null, "z"]')))))));
SELECT * FROM pair_ref ORDER BY id;
SELECT "table", key, reason FROM lww_rejected;
DELETE FROM lww_rejected;
-- A merged update of a referenced column (not the key) while rows still
-- reference the old value: parked; of an unreferenced pair: applied.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('pair', '{a,b}', jsonb_build_array(
    live(1, '[1, "changed"]'), live(3, '[3, "changed too"]')))))));
SELECT * FROM pair ORDER BY id;
SELECT "table", key, reason FROM lww_rejected;
DELETE FROM lww_rejected;

-- A partitioned parent: its rows are found in every partition.
CREATE TABLE pp(id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE pp_a PARTITION OF pp FOR VALUES FROM (0) TO (10);
CREATE TABLE pp_b PARTITION OF pp FOR VALUES FROM (10) TO (20);
INSERT INTO pp VALUES (1, 1), (2, 15);
CREATE TABLE pc(id int PRIMARY KEY, pid int, pk int, FOREIGN KEY (pid, pk) REFERENCES pp);
SELECT lww_track('pc');
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('pc', '{pid,pk}', jsonb_build_array(
    live(1, '[1, 1]'), live(2, '[2, 15]'), live(3, '[3, 15]')))))));
SELECT * FROM pc ORDER BY id;
SELECT "table", key FROM lww_rejected;
DELETE FROM lww_rejected;

-- ---------------------------------------------------------------- 2. an orphan does not block syncs
-- The parent was deleted here; a client created a child under it offline.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(live(40, '["parent"]')))))));
DELETE FROM fa WHERE id = 40;
SELECT stats(lww_apply(cs(jsonb_build_array(
    tbl('fb', '{a,v}', jsonb_build_array(live(40, '[40, "orphan"]'), live(41, '[30, "fine"]')))))));
SELECT "table", key, reason FROM lww_rejected;
-- The next syncs go on (and retry it).
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(live(42, '["other"]')))))));
SELECT "table", key, reason, last_seen > first_seen AS retried FROM lww_rejected;
-- The parent comes back (a newer generation): the orphan applies with it.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(live(40, '["parent again"]', 3)))))));
SELECT * FROM fb WHERE id >= 40 ORDER BY id;
SELECT count(*) AS still_parked FROM lww_rejected;
-- A parked row that no longer fits the table (a column changed type) stays
-- parked with the new reason; it never fails a sync.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fb', '{a,v}', jsonb_build_array(live(50, '[50, "x"]')))))));
ALTER TABLE fb ALTER COLUMN v TYPE int USING NULL;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('fa', '{v}', jsonb_build_array(live(51, '["next"]')))))));
SELECT "table", key, reason FROM lww_rejected;
DELETE FROM lww_rejected;

-- ---------------------------------------------------------------- 3. UNIQUE, CHECK: parked, the rest applies
CREATE TABLE u(id int PRIMARY KEY, email text UNIQUE, qty int CHECK (qty >= 0));
SELECT lww_track('u');
INSERT INTO u VALUES (1, 'one@x', 1);
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('u', '{email,qty}', jsonb_build_array(
    live(2, '["one@x", 2]'), live(3, '["three@x", -3]'), live(4, '["four@x", 4]')))))));
SELECT * FROM u ORDER BY id;
SELECT "table", key, reason FROM lww_rejected ORDER BY key;
SELECT jsonb_path_query_array(changeset::jsonb, '$.tables[0].rows[0].cols') AS parked_registers
  FROM lww_rejected WHERE key = '[2]';
-- A newer version of row 2 with a free address applies; the parked one is
-- then superseded (it changes nothing) and dropped.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('u', '{email,qty}', jsonb_build_array(live(2, '["two@x", 2]')))))));
SELECT * FROM u ORDER BY id;
SELECT "table", key FROM lww_rejected ORDER BY key;
-- The local fix of the CHECK (a row 3 written here, newer) supersedes it too.
INSERT INTO u VALUES (3, 'three@x', 3);
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('u', '{email,qty}', jsonb_build_array(live(4, '["four@x", 5]')))))));
SELECT count(*) AS still_parked FROM lww_rejected;

-- ---------------------------------------------------------------- 4. triggers
-- An ordinary trigger (a counter) fires for local writes, not for merged ones:
-- peers that merged the same changes hold the same rows.
CREATE TABLE cnt(id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := OLD.n + 1; RETURN NEW; END $$;
CREATE TRIGGER bump BEFORE UPDATE ON cnt FOR EACH ROW EXECUTE FUNCTION bump();
SELECT lww_track('cnt');
INSERT INTO cnt VALUES (1, 'a', 0), (2, 'b', 1);
UPDATE cnt SET v = 'a2' WHERE id = 1;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('cnt', '{v,n}', jsonb_build_array(live(2, '["b2", 1]')))))));
SELECT * FROM cnt ORDER BY id;
-- The same trigger ENABLE ALWAYS fires for merged writes too; what it changed
-- is a local write, captured, so the peers converge on it.
ALTER TABLE cnt ENABLE ALWAYS TRIGGER bump;
SELECT lww_seq() AS s1 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('cnt', '{v,n}', jsonb_build_array(live(2, '["b3", 1]')))))));
SELECT * FROM cnt ORDER BY id;
SELECT * FROM feed(:s1, 'cnt');
ALTER TABLE cnt ENABLE TRIGGER bump;

-- An AFTER INSERT trigger on orders that writes the tracked audit: as an
-- ordinary trigger it is quiet for merged orders (the audit row comes from
-- the peer that made it); ENABLE ALWAYS, its write is captured.
CREATE TABLE orders(id int PRIMARY KEY, item text);
CREATE TABLE audit(id int PRIMARY KEY, what text);
CREATE FUNCTION audit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (NEW.id + 1000, 'order ' || NEW.id); RETURN NULL; END $$;
CREATE TRIGGER audit_order AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_order();
SELECT lww_track('orders') + lww_track('audit') AS tracked;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('orders', '{item}', jsonb_build_array(live(1, '["tea"]')))))));
SELECT count(*) AS audit_rows FROM audit;
ALTER TABLE orders ENABLE ALWAYS TRIGGER audit_order;
SELECT lww_seq() AS s2 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('orders', '{item}', jsonb_build_array(live(2, '["milk"]')))))));
SELECT * FROM audit;
SELECT * FROM feed(:s2, 'audit');
SELECT * FROM feed(:s2, 'orders');
-- An ALWAYS trigger that writes the merged row itself (AFTER, a second UPDATE):
-- its write is local, above the merged registers.
CREATE TABLE norm(id int PRIMARY KEY, v text);
CREATE FUNCTION norm_v() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.v <> lower(NEW.v) THEN UPDATE norm SET v = lower(v) WHERE id = NEW.id; END IF; RETURN NULL; END $$;
CREATE TRIGGER a_norm AFTER INSERT OR UPDATE ON norm FOR EACH ROW EXECUTE FUNCTION norm_v();
ALTER TABLE norm ENABLE ALWAYS TRIGGER a_norm;
SELECT lww_track('norm');
SELECT lww_seq() AS s3 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('norm', '{v}', jsonb_build_array(live(1, '["MiXeD"]')))))));
SELECT * FROM norm;
SELECT * FROM feed(:s3, 'norm');

-- ---------------------------------------------------------------- 5. row-level security
CREATE ROLE regress_life_ann;
CREATE ROLE regress_life_bob;
CREATE TABLE note(id int PRIMARY KEY, owner name NOT NULL, body text);
ALTER TABLE note ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON note USING (owner = current_user);
GRANT SELECT, INSERT, UPDATE, DELETE ON note TO regress_life_ann, regress_life_bob;
GRANT USAGE ON SEQUENCE tick TO regress_life_ann, regress_life_bob;
SELECT lww_track('note');
INSERT INTO note VALUES (1, 'regress_life_ann', 'ann 1'), (2, 'regress_life_bob', 'bob 2');
SET ROLE regress_life_ann;
-- Good rows and one the policy refuses: the good ones apply, that one is parked.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('note', '{owner,body}', jsonb_build_array(
    live(3, '["regress_life_ann", "ann 3"]'), live(4, '["regress_life_bob", "planted"]'),
    live(5, '["regress_life_ann", "ann 5"]')))), '00000000-0000-4000-8000-0000000000c1')));
SELECT * FROM note ORDER BY id;
SELECT "table", key, reason FROM lww_rejected;
SET ROLE regress_life_bob;
SELECT count(*) AS bob_sees_parked FROM lww_rejected;
DELETE FROM lww_rejected;  -- not his to give up
RESET ROLE;
SELECT role, tbl, key FROM lwwsync.rejected;
-- A column privilege the caller lacks: that row is parked, the other applies.
CREATE TABLE colpriv(id int PRIMARY KEY, a text, b text);
SELECT lww_track('colpriv');
INSERT INTO colpriv VALUES (1, 'a1', 'b1'), (2, 'a2', 'b2');
GRANT SELECT, INSERT ON colpriv TO regress_life_ann;
GRANT UPDATE (a) ON colpriv TO regress_life_ann;
SET ROLE regress_life_ann;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('colpriv', '{a,b}', jsonb_build_array(
    jsonb_build_object('key', '[1]'::jsonb, 'gen', 1, 'stamp', jsonb_build_array(now_hlc(), 0), 'cols', '[[0, "a1 new"]]'::jsonb),
    jsonb_build_object('key', '[2]'::jsonb, 'gen', 1, 'stamp', jsonb_build_array(now_hlc(), 0), 'cols', '[[1, "b2 new"]]'::jsonb)))),
    '00000000-0000-4000-8000-0000000000c1')));
SELECT "table", key, reason FROM lww_rejected WHERE "table" = 'colpriv';
RESET ROLE;
SELECT * FROM colpriv ORDER BY id;
-- Bounded per principal: the oldest go first.
SELECT lww_config('rejected_max', 1);
SET ROLE regress_life_ann;
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('note', '{owner,body}', jsonb_build_array(
    live(6, '["regress_life_bob", "planted again"]')))), '00000000-0000-4000-8000-0000000000c1')));
SELECT key FROM lww_rejected;
RESET ROLE;
SELECT lww_config('rejected_max', 1000);

-- Tombstones under row-level security: a caller pulls the tombstones of the
-- rows its SELECT policies would have shown it, judged on the values the row
-- had when deleted; nobody learns the keys of other users' deleted rows.
CREATE FUNCTION note_feed() RETURNS TABLE (key jsonb, gen int) LANGUAGE sql AS $$
    SELECT r->'key', (r->>'gen')::int FROM jsonb_array_elements((lww_changes(0)::jsonb)->'tables') tb,
           jsonb_array_elements(tb->'rows') r WHERE tb->>'name' = 'note' ORDER BY 1
$$;
DELETE FROM note WHERE id IN (1, 2);  -- ann's row 1, bob's row 2, deleted here
SET ROLE regress_life_ann;
-- Her row 3, deleted on her device: a merged delete keeps the values too.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('note', '{owner,body}', jsonb_build_array(dead(3)))),
                          '00000000-0000-4000-8000-0000000000c1')));
RESET ROLE;
-- A tombstone of a row never held here: no values to judge, sent to nobody under RLS.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('note', '{owner,body}', jsonb_build_array(dead(9)))))));
SET ROLE regress_life_ann;
SELECT * FROM note_feed();
SET ROLE regress_life_bob;
SELECT * FROM note_feed();
RESET ROLE;
-- The table's owner (no row-level security for it) gets every tombstone.
SELECT * FROM note_feed();

-- ---------------------------------------------------------------- 6. set-based batches
-- Rows of one table merge with a few statements per batch (issue 10): an
-- ALWAYS trigger's writes during a multi-row statement are still local
-- writes, above the merged registers, and the merge's own writes are not.
-- norm (AFTER, writes the merged row itself), five new rows, then five updates:
SELECT lww_seq() AS s6 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('norm', '{v}', jsonb_build_array(
    live(11, '["UP"]'), live(12, '["low"]'), live(13, '["MiX"]'), live(14, '["x"]'), live(15, '["Y"]')))))));
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('norm', '{v}', jsonb_build_array(
    live(11, '["up"]'), live(12, '["LOW"]'), live(13, '["mix"]'), live(14, '["X"]'), live(15, '["y"]')))))));
SELECT * FROM norm WHERE id > 10 ORDER BY id;
SELECT * FROM feed(:s6, 'norm');
-- A trigger writing another row of the same batch (AFTER INSERT: after the
-- whole statement), and a row of another tracked table (audit via orders).
CREATE TABLE chain(id int PRIMARY KEY, v text);
CREATE FUNCTION chain_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE chain SET v = 'after ' || NEW.id WHERE id = NEW.id + 1; RETURN NULL; END $$;
CREATE TRIGGER a_chain AFTER INSERT ON chain FOR EACH ROW EXECUTE FUNCTION chain_next();
ALTER TABLE chain ENABLE ALWAYS TRIGGER a_chain;
SELECT lww_track('chain');
SELECT lww_seq() AS s7 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('chain', '{v}', jsonb_build_array(
    live(1, '["one"]'), live(2, '["two"]'), live(3, '["three"]'), live(4, '["four"]'), live(6, '["six"]')))))));
SELECT * FROM chain ORDER BY id;
SELECT * FROM feed(:s7, 'chain');
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('orders', '{item}', jsonb_build_array(
    live(11, '["a"]'), live(12, '["b"]'), live(13, '["c"]'), live(14, '["d"]')))))));
SELECT * FROM audit WHERE id > 1010 ORDER BY id;
SELECT key, local FROM feed(:s7, 'audit');
-- A BEFORE trigger firing during the merge (cnt's bump, ENABLE ALWAYS): the
-- table merges row by row, each bump captured as a local write.
ALTER TABLE cnt ENABLE ALWAYS TRIGGER bump;
INSERT INTO cnt VALUES (3, 'c', 0), (4, 'd', 0);
SELECT lww_seq() AS s8 \gset
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('cnt', '{v,n}', jsonb_build_array(
    live(1, '["a4", 10]'), live(2, '["b4", 20]'), live(3, '["c4", 30]'), live(4, '["d4", 40]'), live(5, '["e4", 50]')))))));
SELECT * FROM cnt ORDER BY id;
SELECT * FROM feed(:s8, 'cnt');
ALTER TABLE cnt ENABLE TRIGGER bump;
-- A multi-row delete, and a batch whose rows are refused: redone row by row,
-- the good rows applied, the refused one parked.
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('norm', '{v}', jsonb_build_array(
    dead(11), dead(12), dead(13), dead(14)))))));
SELECT * FROM norm WHERE id > 10 ORDER BY id;
CREATE TABLE positive(id int PRIMARY KEY, v int CHECK (v > 0));
SELECT lww_track('positive');
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('positive', '{v}', jsonb_build_array(
    live(1, '[1]'), live(2, '[2]'), live(3, '[-3]'), live(4, '[4]'), live(5, '[5]')))))));
SELECT * FROM positive ORDER BY id;
SELECT "table", key, reason FROM lww_rejected WHERE "table" = 'positive';
DELETE FROM lww_rejected WHERE "table" = 'positive';
-- A deferrable primary key, which INSERT ... ON CONFLICT cannot use: its
-- rows merge row by row, new ones inserted plainly.
CREATE TABLE late(id int, v text, CONSTRAINT late_pk PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED);
SELECT lww_track('late');
INSERT INTO late VALUES (1, 'local');
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('late', '{v}', jsonb_build_array(
    live(1, '["one"]'), live(2, '["two"]'), live(3, '["three"]'), live(4, '["four"]')))))));
SELECT stats(lww_apply(cs(jsonb_build_array(tbl('late', '{v}', jsonb_build_array(live(5, '["five"]')))))));
SELECT * FROM late ORDER BY id;

\c :main_db
DROP DATABASE lww_life;
DROP ROLE regress_life_ann, regress_life_bob;
