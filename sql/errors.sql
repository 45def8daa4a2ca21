-- errors: every bad input gets a clear error and nothing of its batch is
-- applied. After each refusal the database is shown unchanged: the user
-- table, its metadata (lww_changes without its "upto"), interned nodes and
-- peer cursors.
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_errors;
\c lww_errors
CREATE EXTENSION lwwsync;
CREATE TABLE t(id int PRIMARY KEY, name text, n int, email text UNIQUE);
CREATE TABLE pair(a int, b text, v text, PRIMARY KEY (a, b));
INSERT INTO t VALUES (1, 'one', 1, 'one@example.com'), (2, 'two', 2, 'two@example.com');
SELECT lww_track('t'), lww_track('pair');

-- A current stamp (hlc = unix ms << 16) and a change set around some tables.
CREATE FUNCTION now_hlc() RETURNS text LANGUAGE sql AS
$$ SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text $$;
CREATE FUNCTION cs(tables text, origin text DEFAULT '00000000-0000-4000-8000-0000000000a1')
RETURNS text LANGUAGE sql AS $$
    SELECT format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"1",'
                  '"nodes":["%s","00000000-0000-4000-8000-0000000000a2"],"tables":%s}',
                  origin, origin, replace(tables, '$HLC', now_hlc()))
$$;
-- One row of table t, from the default origin.
CREATE FUNCTION row_t(row_json text) RETURNS text LANGUAGE sql AS $$
    SELECT cs('[{"name":"t","key":["id"],"columns":["name","n","email"],"rows":[' || row_json || ']}]')
$$;
CREATE FUNCTION fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(t::text, ';' ORDER BY id) FROM t),
        (SELECT string_agg(pair::text, ';' ORDER BY a, b) FROM pair),
        (SELECT string_agg(idx || '=' || id, ',' ORDER BY idx) FROM lwwsync.nodes),
        (SELECT string_agg(node || '=' || received, ',' ORDER BY node) FROM lwwsync.peers),
        (lww_changes(0)::jsonb - 'upto')::text))
$$;
-- The error of a statement with node ids and clock readings masked.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(regexp_replace(SQLERRM,
        lww_node_id()::text, '<own node>', 'g'), 'is [0-9]+ s ahead', 'is N s ahead');
END
$$;
-- The session's settings, which a failed apply must leave alone.
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 0;
SELECT fingerprint() AS fp \gset
SELECT * FROM t ORDER BY id;

\set VERBOSITY terse
-- ---------------------------------------------------------------- not a change set
SELECT lww_apply('');
SELECT fingerprint() = :'fp' AS unchanged;
SELECT lww_apply('{"format":');
SELECT lww_apply('{"format":"lwwsync.changeset","version":1,} ');
SELECT lww_apply('[]');
SELECT lww_apply('null');
SELECT lww_apply('{"format":"lwwsync.changeset","version":1} trailing');
SELECT fingerprint() = :'fp' AS unchanged;
-- Truncated: a valid change set cut short.
SELECT left(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"three"],[1,3],[2,null]]}'), -9) AS truncated \gset
SELECT right(:'truncated', 12) AS ends_with;
SELECT lww_apply(:'truncated');
SELECT fingerprint() = :'fp' AS unchanged;
-- Another format or version.
SELECT lww_apply('{"format":"lwwsync.exchange","version":1}');
SELECT lww_apply('{"version":1,"origin":"00000000-0000-4000-8000-0000000000a1"}');
SELECT lww_apply(replace(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true}'), '"version":1', '"version":2'));
SELECT lww_apply(replace(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true}'), '"version":1', '"version":"1"'));
SELECT fingerprint() = :'fp' AS unchanged;
-- Envelope fields.
SELECT lww_apply(replace(cs('[]'), '"origin":"00000000-0000-4000-8000-0000000000a1",', ''));
SELECT lww_apply(cs('[]', 'not-a-uuid'));
SELECT lww_apply(replace(cs('[]'), '"since":"0"', '"since":0'));
SELECT lww_apply(replace(cs('[]'), '"since":"0"', '"since":"5"'));
SELECT lww_apply(replace(cs('[]'), '"upto":"1"', '"upto":"99999999999999999999"'));
SELECT lww_apply(replace(cs('[]'), '"nodes":[', '"nodes":["nope",'));
SELECT lww_apply(replace(cs('[]'), '"tables":[]', '"tables":{}'));
SELECT lww_apply(replace(cs('[]'), ',"tables":[]', ''));
SELECT fingerprint() = :'fp' AS unchanged;

-- ---------------------------------------------------------------- tables and columns
-- Tables and columns this database does not have are no error: their
-- registers are held in lwwsync.pending (docs/SCHEMA.md; rolled back here).
BEGIN;
SELECT lww_apply(cs('[{"name":"nope","key":["id"],"columns":["name"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"public.t","key":["id"],"columns":["name"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"T","key":["id"],"columns":["name"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":["name","colour"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"],[1,"red"]]}]}]'));
SELECT tbl, columns, registers FROM lwwsync.pending ORDER BY id;
ROLLBACK;
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":["id"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,4]]}]}]'));
SELECT lww_apply(cs('[{"name":"t","key":["name"],"columns":["n"],"rows":[{"key":["x"],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"t","key":["id","name"],"columns":["n"],"rows":[{"key":[3,"x"],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"pair","key":["b","a"],"columns":["v"],"rows":[{"key":["x",1],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT lww_apply(cs('[{"name":"t","key":[],"columns":["n"],"rows":[]}]'));
SELECT lww_apply(cs('[{"name":"","key":["id"],"columns":[],"rows":[]}]'));
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":[""],"rows":[]}]'));
-- The first table is fine, the second is not: nothing of the first is applied.
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":["name"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"three"]]}]},
                      {"name":"pair","key":["a"],"columns":[],"rows":[]}]'));
SELECT fingerprint() = :'fp' AS unchanged;

-- ---------------------------------------------------------------- rows, stamps, values
SELECT lww_apply(row_t('{"key":[3,4],"gen":1,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":3,"gen":1,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":0,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":-1,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":"1","stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":9007199254740992,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1.5,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",2],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",-1],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["0",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":[12345,0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["-5",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["18446744073709551616",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC"],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":"yes"}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"cols":[[0,"x"]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[3,"x"]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x","$HLC"]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x","$HLC",7]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":{"0":"x"}}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,1.5]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,1e3]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,true]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,[1]]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"bytes":"***"}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"real":"lots"}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"int":"12x"}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"int":"9223372036854775808"}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"date":"2024-01-01"}]]}'));
-- Text that is not UTF-8 (a lone surrogate escape) is refused.
SELECT try(format('SELECT lww_apply(%L)', row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"bad \udc00 surrogate"]]}')))
       LIKE 'lww_apply: %' AS lone_surrogate_refused;
SELECT fingerprint() = :'fp' AS unchanged;
-- A NULL key.
SELECT lww_apply(row_t('{"key":[null],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}'));
SELECT lww_apply(cs('[{"name":"pair","key":["a","b"],"columns":["v"],"rows":[{"key":[1,null],"gen":1,"stamp":["$HLC",0],"row":true}]}]'));
SELECT fingerprint() = :'fp' AS unchanged;
-- Values that do not fit the column's type.
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,"abc"]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,1099511627776]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,{"int":"-9223372036854775808"}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,{"real":1.5}]]}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,{"bytes":"AAE="}]]}'));
SELECT lww_apply(row_t('{"key":["three"],"gen":1,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[4294967297],"gen":1,"stamp":["$HLC",0],"row":true}'));
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"nul \u0000 inside"]]}'));
-- Bytes that are not UTF-8 do not go into a text column.
SELECT try(format('SELECT lww_apply(%L)', row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,{"bytes":"/w=="}]]}')))
       LIKE 'lww_apply: %' AS non_utf8_bytes_refused;
SELECT fingerprint() = :'fp' AS unchanged;
-- The bad value comes after good rows of the same batch: none of them stays.
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"three"],[1,3]]},
                        {"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"ONE"]]},
                        {"key":[2],"gen":2,"stamp":["$HLC",0],"row":true},
                        {"key":[4],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,"four"]]}'));
SELECT fingerprint() = :'fp' AS unchanged;
-- A unique violation on a non-key UNIQUE column, after good rows: a well-formed
-- row this database cannot apply is parked (lww_rejected), not fatal; the good
-- rows apply. (Rolled back: the tests below start from the state before.)
BEGIN;
SELECT lww_apply(row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"three"],[1,3],[2,"three@example.com"]]},
                        {"key":[1],"gen":1,"stamp":["$HLC",0],"cols":[[0,"ONE"]]},
                        {"key":[5],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"five"],[2,"two@example.com"]]}'));
SELECT * FROM t ORDER BY id;
SELECT "table", key, reason FROM lww_rejected;
ROLLBACK;
SELECT fingerprint() = :'fp' AS unchanged;
SELECT * FROM t ORDER BY id;

-- ---------------------------------------------------------------- stamps from the future, own node
-- One hour ahead of this clock: refused, naming the node that stamped it.
SELECT (((extract(epoch FROM clock_timestamp()) + 3600) * 1000)::bigint << 16)::text AS future \gset
SELECT try(format('SELECT lww_apply(%L)', row_t(format(
  '{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]},{"key":[1],"gen":1,"stamp":["%s",0],"cols":[[0,"y"]]}', :'future'))));
-- A column register stamped by the second node of "nodes".
SELECT try(format('SELECT lww_apply(%L)', row_t(format(
  '{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"],[1,3,"%s",1]]}', :'future'))));
SELECT fingerprint() = :'fp' AS unchanged;
-- Four minutes ahead is within the default drift of five: accepted.
SELECT (((extract(epoch FROM clock_timestamp()) + 240) * 1000)::bigint << 16)::text AS ahead \gset
SELECT lww_apply(row_t(format('{"key":[3],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"three"]]}', :'ahead')));
SELECT id, name FROM t WHERE id = 3;
-- A local write after it is stamped after it, so it wins everywhere.
SELECT lww_seq() AS s \gset
UPDATE t SET name = 'local three' WHERE id = 3;
SELECT (r->'stamp'->>0)::numeric > :'ahead'::numeric AS stamped_after
FROM jsonb_array_elements((lww_changes(:s)::jsonb)->'tables'->0->'rows') r;
SELECT fingerprint() AS fp \gset
-- A change set from this database's own node.
SELECT try(format('SELECT lww_apply(%L)', cs('[{"name":"t","key":["id"],"columns":["name"],"rows":[{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}]}]', lww_node_id()::text)));
SELECT fingerprint() = :'fp' AS unchanged;

-- ---------------------------------------------------------------- nothing leaks out of a failure
SHOW TimeZone;
SHOW DateStyle;
SHOW extra_float_digits;
-- A failure inside a savepoint, then a good batch from the same node in the
-- same transaction: the metadata stays whole.
BEGIN;
SAVEPOINT s;
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":["name","n"],"rows":[
  {"key":[6],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"six"]]},
  {"key":[7],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,"seven"]]}]}]',
  '00000000-0000-4000-8000-0000000000a3'));
ROLLBACK TO SAVEPOINT s;
SELECT lww_apply(cs('[{"name":"t","key":["id"],"columns":["name","n"],"rows":[
  {"key":[6],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"six"],[1,6]]}]}]',
  '00000000-0000-4000-8000-0000000000a3'));
COMMIT;
SELECT * FROM t ORDER BY id;
SELECT id FROM lwwsync.nodes WHERE id = '00000000-0000-4000-8000-0000000000a3';
SELECT (lww_changes(0)::jsonb)->'nodes' ? '00000000-0000-4000-8000-0000000000a3' AS node_in_changes;
SELECT fingerprint() AS fp \gset

-- ---------------------------------------------------------------- lww_exchange requests
SELECT lww_exchange('');
SELECT lww_exchange('{"format":"lwwsync.changeset","version":1}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":2,"node":"00000000-0000-4000-8000-0000000000a1","received":"0"}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"received":"0"}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":0}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":"-1"}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":"0","limit":0}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":"0","limit":1000001}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":"0","push":[]}');
-- A pushed batch whose origin is not the caller.
SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a2","received":"0","push":%s}',
  row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]}'))::json);
-- A pushed batch with a bad value: the exchange fails as a whole, the cursor stays.
SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000a1","received":"0","push":%s}',
  row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,"x"]]},{"key":[8],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[1,"x"]]}'))::json);
SELECT count(*) AS cursors FROM lwwsync.peers;
SELECT try(format('SELECT lww_exchange(%L)', format('{"format":"lwwsync.exchange","version":1,"node":"%s","received":"0"}', lww_node_id())));
SELECT fingerprint() = :'fp' AS unchanged;

-- ---------------------------------------------------------------- hostile shapes
SELECT lww_apply(NULL) IS NULL AS null_in_null_out;
-- Deep nesting is refused without exhausting the stack; the session goes on.
SELECT try('SELECT lww_apply(repeat(''['', 1000000))') ~ '^lww_apply: invalid change set' AS deep_apply_refused;
-- Postgres's own json input refuses it before lww_exchange runs.
SELECT try('SELECT lww_exchange(repeat(''{"a":'', 1000000)::json)') ~ '^(lww_exchange: invalid exchange document|stack depth limit exceeded)' AS deep_exchange_refused;
SELECT try(format('SELECT lww_apply(%L)', row_t('{"key":[3],"gen":1,"stamp":["$HLC",0],"row":true,"cols":[[0,' || repeat('[', 1000000) || ']]}')))
       ~ '^lww_apply: invalid change set' AS deep_value_refused;
SELECT fingerprint() = :'fp' AS unchanged;
SELECT * FROM t ORDER BY id;
\set VERBOSITY default

\c :main_db
DROP DATABASE lww_errors;
