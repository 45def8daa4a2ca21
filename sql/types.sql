-- types: every common PostgreSQL type survives a sync to another database,
-- exactly (same value, same text form), whatever the session settings of the
-- writer, the reader, the sender and the receiver.
SELECT current_database() AS main_db \gset
SELECT 'postgresql:///lww_types_a?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_a \gset
-- Both databases start from one template (schema and helpers, no extension:
-- each database makes its own node id).
CREATE DATABASE lww_types_tpl;
\c lww_types_tpl
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE ty(
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric,
    tx text, vc varchar(5), ch char(4), by bytea, bo bool, u uuid,
    d date, tm time, ts timestamp, tz timestamptz, iv interval,
    js json, jb jsonb, ta text[], ia int[], e mood, dm posint);
CREATE TABLE more(
    id int PRIMARY KEY,
    tt timetz, ip inet, cn cidr, mac macaddr, r int4range, tr tstzrange,
    tv tsvector, bv varbit, pt point, fa float8[], na numeric(12,4), tza timestamptz[], c1 "char");
-- A key made of awkward types.
CREATE TABLE keyed(
    k_tx text, k_tz timestamptz, k_u uuid, k_n numeric, k_by bytea, k_e mood, v text,
    PRIMARY KEY (k_tx, k_tz, k_u, k_n, k_by, k_e));
-- The change set's values only, as the JSON text the extension wrote.
CREATE FUNCTION cs_values(cs text, k int)
RETURNS TABLE(col text, value text) LANGUAGE sql AS $$
    SELECT t->'columns'->>(c->>0)::int, (c->1)::text
    FROM json_array_elements((cs::json)->'tables') t, json_array_elements(t->'rows') r,
         json_array_elements(r->'cols') c
    WHERE t->>'name' = 'ty' AND (r->'key'->>0)::int = k
    ORDER BY (c->>0)::int
$$;
-- Compares the rows of "ty" here with a snapshot (an array of rows in text
-- form, taken in the other database): per column, equal values and equal text.
CREATE FUNCTION compare_ty(snapshot text)
RETURNS TABLE(col text, rows bigint, same_value boolean, same_text boolean) LANGUAGE sql AS $$
    SELECT v.col, count(*), bool_and(v.same_value), bool_and(v.same_text)
    FROM unnest(snapshot::ty[]) a FULL JOIN ty b USING (id),
    LATERAL (VALUES
        (1, 'id', a.id IS NOT DISTINCT FROM b.id, a.id::text IS NOT DISTINCT FROM b.id::text),
        (2, 'i2', a.i2 IS NOT DISTINCT FROM b.i2, a.i2::text IS NOT DISTINCT FROM b.i2::text),
        (3, 'i4', a.i4 IS NOT DISTINCT FROM b.i4, a.i4::text IS NOT DISTINCT FROM b.i4::text),
        (4, 'i8', a.i8 IS NOT DISTINCT FROM b.i8, a.i8::text IS NOT DISTINCT FROM b.i8::text),
        (5, 'f4', a.f4 IS NOT DISTINCT FROM b.f4, a.f4::text IS NOT DISTINCT FROM b.f4::text),
        (6, 'f8', a.f8 IS NOT DISTINCT FROM b.f8, a.f8::text IS NOT DISTINCT FROM b.f8::text),
        (7, 'n', a.n IS NOT DISTINCT FROM b.n, a.n::text IS NOT DISTINCT FROM b.n::text),
        (8, 'tx', a.tx IS NOT DISTINCT FROM b.tx, a.tx::text IS NOT DISTINCT FROM b.tx::text),
        (9, 'vc', a.vc IS NOT DISTINCT FROM b.vc, a.vc::text IS NOT DISTINCT FROM b.vc::text),
        (10, 'ch', a.ch IS NOT DISTINCT FROM b.ch, a.ch::text IS NOT DISTINCT FROM b.ch::text
                   AND octet_length(a.ch) IS NOT DISTINCT FROM octet_length(b.ch)),
        (11, 'by', a.by IS NOT DISTINCT FROM b.by, a.by::text IS NOT DISTINCT FROM b.by::text),
        (12, 'bo', a.bo IS NOT DISTINCT FROM b.bo, a.bo::text IS NOT DISTINCT FROM b.bo::text),
        (13, 'u', a.u IS NOT DISTINCT FROM b.u, a.u::text IS NOT DISTINCT FROM b.u::text),
        (14, 'd', a.d IS NOT DISTINCT FROM b.d, a.d::text IS NOT DISTINCT FROM b.d::text),
        (15, 'tm', a.tm IS NOT DISTINCT FROM b.tm, a.tm::text IS NOT DISTINCT FROM b.tm::text),
        (16, 'ts', a.ts IS NOT DISTINCT FROM b.ts, a.ts::text IS NOT DISTINCT FROM b.ts::text),
        (17, 'tz', a.tz IS NOT DISTINCT FROM b.tz, a.tz::text IS NOT DISTINCT FROM b.tz::text),
        (18, 'iv', a.iv IS NOT DISTINCT FROM b.iv, a.iv::text IS NOT DISTINCT FROM b.iv::text),
        (19, 'js', a.js::text IS NOT DISTINCT FROM b.js::text, a.js::text IS NOT DISTINCT FROM b.js::text),
        (20, 'jb', a.jb IS NOT DISTINCT FROM b.jb, a.jb::text IS NOT DISTINCT FROM b.jb::text),
        (21, 'ta', a.ta IS NOT DISTINCT FROM b.ta, a.ta::text IS NOT DISTINCT FROM b.ta::text),
        (22, 'ia', a.ia IS NOT DISTINCT FROM b.ia, a.ia::text IS NOT DISTINCT FROM b.ia::text),
        (23, 'e', a.e IS NOT DISTINCT FROM b.e, a.e::text IS NOT DISTINCT FROM b.e::text),
        (24, 'dm', a.dm IS NOT DISTINCT FROM b.dm, a.dm::text IS NOT DISTINCT FROM b.dm::text)
    ) v(ord, col, same_value, same_text)
    GROUP BY v.ord, v.col ORDER BY v.ord
$$;

\c :main_db
CREATE DATABASE lww_types_a TEMPLATE lww_types_tpl;
CREATE DATABASE lww_types_b TEMPLATE lww_types_tpl;
DROP DATABASE lww_types_tpl;
\c lww_types_a
CREATE EXTENSION lwwsync;
SELECT lww_track('ty'), lww_track('more'), lww_track('keyed');
SELECT lww_node_id() AS node_a \gset
\c lww_types_b
CREATE EXTENSION lwwsync;
SELECT lww_track('ty'), lww_track('more'), lww_track('keyed');
SELECT lww_node_id() <> :'node_a' AS own_node_id;

-- ---------------------------------------------------------------- write in A
-- Session settings far from the canonical ones: the extension must not care.
\c lww_types_a
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 0;
SET bytea_output = 'escape';
INSERT INTO ty VALUES
  (1, -32768, -2147483648, -9223372036854775808, '-Infinity', 'Infinity',
   '-1234567890123456789012345678901234567890.1234567890', 'héllo ☃ 𝄞 日本', 'ab', 'ab',
   '\x00ff0000017f', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2024-02-29', '23:59:59.999999', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+05:30',
   '1 year 2 months 3 days 04:05:06.5', '{"b": 1,  "a" : [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}',
   '{"a","b c",NULL,"\"q\"",""}', '{1,NULL,-3}', 'happy', 7),
  (2, 32767, 2147483647, 9223372036854775807, 'Infinity', '-Infinity',
   '1234567890123456789012345678901234567890', '', 'abcde', 'abcd',
   '\x', false, '00000000-0000-0000-0000-000000000000',
   'infinity', '00:00', '-infinity', 'infinity',
   '-1 years +2 days -03:00:00.000001', '[]', '{}',
   '{}', '{}', 'sad', 2147483647),
  (3, 0, 0, 0, '-0', '-0', 'NaN', 'tab	newline
end', NULL, NULL,
   '\x00', NULL, NULL,
   '4713-01-01 BC', '24:00', '1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
   '0', 'null', 'null', '{NULL}', '{{1,2},{3,4}}', 'ok', 1),
  (4, 1, -1, 9007199254740993, 'NaN', 'NaN', '0.000000000000000000000000000001', 'x', ' ', ' ',
   '\x0001', true, 'ffffffff-ffff-ffff-ffff-ffffffffffff',
   '2000-01-01', '12:00:00.5', '2000-01-01 00:00:00', '1999-12-31 23:59:59.999999-08',
   '-178000000 years', '{"n": 1e400}', '{"n": 12345678901234567890.123}', '{"ü","日"}', '{2147483647}', NULL, NULL),
  (5, NULL, NULL, NULL, '1.1', '0.1', '-0.000', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (6, 2, 3, -9007199254740992, '3.4028235e38', '2.2250738585072014e-308', '1e-100', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (7, NULL, NULL, 4611686018427387904, '1.4e-45', '4.9e-324', '42.4200', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (8, NULL, NULL, NULL, NULL, '0.30000000000000004', 'Infinity', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO more VALUES
  (1, '12:34:56.789+05:30', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,10)',
   '[2024-01-01 00:00+05:30,2024-01-02 00:00+05:30)', 'a fat:2 cat', B'10110', '(1.5,-2.25)',
   '{-0,NaN,Infinity,0.1}', '12345678.9000', '{"2024-02-29 12:34:56.789+05:30",NULL}', 'x'),
  (2, NULL, '::1', '2001:db8::/32', NULL, 'empty', '(,)', '', B'', '(0,-0)', '{}', '-0.0001', '{}', NULL);
INSERT INTO keyed VALUES
  ('späť', '2024-02-29 12:34:56.789+05:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.50, '\x00ff', 'ok', 'first');

-- What lww_changes writes: the canonical JSON of each value, whatever the
-- session settings (integers as JSON numbers, beyond 2^53 as {"int"}; reals
-- as {"real"}; bool as 0/1; bytea as base64 {"bytes"}; numeric as its exact
-- text; timestamptz in UTC; dates, times and intervals in ISO/postgres style;
-- everything else in its text form).
SELECT lww_changes(0) AS cs \gset
SELECT * FROM cs_values(:'cs', 1);
SELECT * FROM cs_values(:'cs', 2);
SELECT * FROM cs_values(:'cs', 3);
SELECT col, value FROM cs_values(:'cs', 4) WHERE value <> 'null';
SELECT col, value FROM cs_values(:'cs', 6) WHERE col IN ('i8', 'f8', 'n');
SELECT col, value FROM cs_values(:'cs', 7) WHERE value <> 'null';
SELECT col, value FROM cs_values(:'cs', 8) WHERE value <> 'null';
SELECT (r->'key')::text AS key_values
FROM json_array_elements((:'cs'::json)->'tables') t, json_array_elements(t->'rows') r
WHERE t->>'name' = 'keyed';

-- The snapshot of A, in text forms that parse back exactly.
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SELECT array_agg(ty ORDER BY id)::text AS snap_a FROM ty \gset
SELECT array_agg(more ORDER BY id)::text AS snap_more_a FROM more \gset
SELECT array_agg(keyed)::text AS snap_keyed_a FROM keyed \gset

-- ---------------------------------------------------------------- apply in B
-- The receiver's session has other settings again.
\c lww_types_b
SET TimeZone = 'America/Los_Angeles';
SET DateStyle = 'German';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15;
SET lc_numeric = 'C';
SELECT lww_apply(:'cs');
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SELECT * FROM compare_ty(:'snap_a');
-- Specials, spelled out.
SELECT id, f4::text AS f4, f8::text AS f8, n::text AS n FROM ty ORDER BY id;
SELECT id, tz, tz = '2024-02-29 12:34:56.789+05:30' AS same_instant FROM ty WHERE id = 1;
SELECT id, tz::text, ts::text, d::text, tm::text, iv::text FROM ty WHERE id IN (2, 3) ORDER BY id;
SELECT id, by, octet_length(by) AS bytes, ch, octet_length(ch) AS ch_bytes, vc, tx FROM ty ORDER BY id;
SELECT id, js::text, jb::text, ta, ia, e, dm FROM ty ORDER BY id;
SELECT a::text = b::text AS same_text
FROM (SELECT array_agg(more ORDER BY id) FROM more) x(b), (SELECT :'snap_more_a'::more[]) y(a);
SELECT * FROM more ORDER BY id \gx
SELECT fa::text, (fa[1])::text AS minus_zero, tza::text FROM more WHERE id = 1;
SELECT a = b AS same_rows, a::text = b::text AS same_text
FROM (SELECT array_agg(keyed) FROM keyed) x(b), (SELECT :'snap_keyed_a'::keyed[]) y(a);

-- ---------------------------------------------------------------- B writes, A pulls
-- Updates that change only the sign of a zero, the scale of a numeric or the
-- formatting of a json value are real changes and travel too.
UPDATE ty SET f8 = '0', f4 = '0', n = '1.0' WHERE id = 3;
UPDATE ty SET n = '1.00', js = '{"b":1,"a":[1,2.50]}', jb = '{"a": [1, 2.5], "b": 1}' WHERE id = 1;
UPDATE ty SET f8 = '-0' WHERE id = 5;
INSERT INTO ty VALUES
  (9, -1, -1, -1, '-1.5', '-1e300', '-0.5', 'from b', 'b', 'b', '\xdeadbeef', false,
   'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1999-01-08', '04:05:06', '1999-01-08 04:05:06',
   '1999-01-08 04:05:06 PST', '-2 days 04:00', '{"k":"v"}', '{"k":"v"}', '{x}', '{0}', 'ok', 3);
UPDATE keyed SET v = 'second' WHERE k_tx = 'späť';
SET DateStyle = 'ISO, YMD';
SELECT array_agg(ty ORDER BY id)::text AS snap_b FROM ty \gset
SELECT array_agg(keyed)::text AS snap_keyed_b FROM keyed \gset
\c lww_types_a
SET TimeZone = 'Pacific/Chatham';
SET DateStyle = 'Postgres, DMY';
SELECT (s->'received'->>'applied')::int > 0 AS pulled
FROM lww_sync(replace(:'url_a', 'lww_types_a', 'lww_types_b')) s;
SET DateStyle = 'ISO, YMD';
SET extra_float_digits = 1;
SELECT * FROM compare_ty(:'snap_b');
SELECT id, f4::text AS f4, f8::text AS f8, n::text AS n, js::text, jb::text FROM ty WHERE id IN (1, 3, 5) ORDER BY id;
SELECT id, tz, tz = '1999-01-08 12:05:06+00' AS same_instant FROM ty WHERE id = 9;
SELECT a = b AS same_rows, a::text = b::text AS same_text, (SELECT v FROM keyed) AS v
FROM (SELECT array_agg(keyed) FROM keyed) x(b), (SELECT :'snap_keyed_b'::keyed[]) y(a);
SELECT count(*) AS keyed_rows FROM keyed;

-- ---------------------------------------------------------------- values that do not fit
-- A value from another node goes through the column's own input checks.
\set VERBOSITY terse
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["dm"],"rows":[
    {"key":[50],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,-5]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["vc"],"rows":[
    {"key":[50],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"toolong"]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["e"],"rows":[
    {"key":[50],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"angry"]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["i2"],"rows":[
    {"key":[50],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,32768]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["bo"],"rows":[
    {"key":[50],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,2]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
\set VERBOSITY default
SELECT count(*) AS row_50 FROM ty WHERE id = 50;
-- Other kinds are accepted where their text form fits: SQLite peers send
-- what they hold (a bool as 0/1 or as text, a real for a numeric column).
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000d1","since":"0","upto":"1",
  "nodes":["00000000-0000-4000-8000-0000000000d1"],
  "tables":[{"name":"ty","key":["id"],"columns":["bo","n","f8","tx","i8","f4","by","tz"],"rows":[
    {"key":[51],"gen":1,"stamp":["%s",0],"row":true,
     "cols":[[0,1],[1,{"real":2.5}],[2,7],[3,"t"],[4,{"int":"-9223372036854775808"}],[5,{"real":-0.0}],[6,{"bytes":"AAEC"}],[7,"2024-02-29 07:04:56.789+00"]]}]}]}',
  ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text));
SELECT bo, n, f8, tx, i8, f4::text, by, tz = '2024-02-29 12:34:56.789+05:30' AS tz_ok FROM ty WHERE id = 51;

\c :main_db
DROP DATABASE lww_types_a;
DROP DATABASE lww_types_b;
