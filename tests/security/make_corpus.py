#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/security/corpus/<target>/.

Valid documents from docs/PROTOCOL.md and the unit tests, plus edge cases:
deep nesting, huge numbers, the 2^53 / 2^63 / 2^64 boundaries, lone
surrogates, NUL, duplicate keys and duplicate columns. Run it again after
changing it; the files are committed so CI needs no Python step.
Seeds must never reproduce an open finding (tests/security/findings/).
"""
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
NODE_A = "6f1c2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f"
NODE_B = "0c9d6a7e-1f1e-4a59-9d0c-3b8e2f7a6d51"
HLC = "117681734027968512"


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


# ------------------------------------------------------------ change sets

PROTOCOL_CHANGESET = """{
  "format": "lwwsync.changeset",
  "version": 1,
  "origin": "6f1c2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f",
  "since": "120",
  "tables": [
    {
      "name": "todos",
      "key": ["id"],
      "columns": ["title", "done", "note"],
      "rows": [
        {"key": [1], "gen": 1, "stamp": ["117681734027968512", 0], "row": true,
         "cols": [[0, "buy milk"], [1, 0], [2, null]]},
        {"key": [1], "gen": 1, "stamp": ["117681734028034049", 1],
         "cols": [[2, "oat milk"], [1, 1, "117681734028100000", 0]]},
        {"key": [2], "gen": 2, "stamp": ["117681734028034050", 0], "row": true}
      ]
    }
  ],
  "upto": "131",
  "nodes": ["6f1c2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f", "0c9d6a7e-1f1e-4a59-9d0c-3b8e2f7a6d51"]
}
"""


def changeset(rows, columns=("v",), key=("id",), name="t", extra=None, nodes=(NODE_A,)):
    cs = {"format": "lwwsync.changeset", "version": 1, "origin": NODE_A, "since": "0",
          "tables": [{"name": name, "key": list(key), "columns": list(columns), "rows": rows}],
          "upto": "9", "nodes": list(nodes)}
    if extra:
        cs.update(extra)
    return compact(cs)


def row(key, cols=None, gen=1, has_row=True):
    r = {"key": key, "gen": gen, "stamp": [HLC, 0]}
    if has_row:
        r["row"] = True
    if cols is not None:
        r["cols"] = cols
    return r


# Every value kind, as the unit tests' every_kind() writes them.
VALUES = [
    None, 0, -1, 9007199254740991, -9007199254740991,
    {"int": "9007199254740992"}, {"int": "-9223372036854775808"}, {"int": "9223372036854775807"},
    {"real": 0.1}, {"real": -0.0}, {"real": 3.0}, {"real": 2.5e-300}, {"real": 1.5e300},
    {"real": "NaN"}, {"real": "Infinity"}, {"real": "-Infinity"},
    "", "h\u00e9llo \u2713 \U0001F600", "a\u0000b", "\"quoted\" \\ / \n\t",
    {"bytes": ""}, {"bytes": "AAD/AQ=="}, {"bytes": "eA=="}, {"bytes": "eHk="}, {"bytes": "eHl6"},
]


def changesets():
    t = "changeset"
    write(t, "protocol_example.json", PROTOCOL_CHANGESET)
    write(t, "every_kind.json", changeset([row([i], [[0, v]]) for i, v in enumerate(VALUES)]))
    write(t, "composite_key.json", changeset([row([1, "x"], [[0, 1], [1, {"real": 0.5}]])],
                                             columns=("a", "b"), key=("id", "k2")))
    write(t, "paged.json", changeset([row([1], [[0, "x", "117681734027968513", 1]], has_row=False)],
                                     extra={"since": "7", "after": "9", "upto": "18446744073709551615",
                                            "complete": False}, nodes=(NODE_A, NODE_B)))
    write(t, "tombstone_gen_max.json", changeset([row([1], gen=9007199254740990)]))
    write(t, "empty.json", changeset([], extra={"tables": []}))
    # Rows as arrays, [key, gen, hlc, node, value per column] (a snapshot's).
    write(t, "array_rows.json", changeset([[[i], 1, HLC, 0, v] for i, v in enumerate(VALUES)]))
    write(t, "array_and_object_rows.json", changeset([[[1], 3, HLC, 0, "a", 2], row([2], [[1, 5]])],
                                                     columns=("a", "b")))
    # Refused: each breaks one rule.
    write(t, "gen_2_53.json", changeset([row([1], gen=9007199254740992)]))
    write(t, "gen_2_64.json", changeset([row([1], gen=18446744073709551616)]))
    write(t, "since_2_64.json", changeset([row([1])], extra={"since": "18446744073709551616"}))
    write(t, "int_2_63.json", changeset([row([{"int": "9223372036854775808"}])]))
    write(t, "int_minus_2_63_minus_1.json", changeset([row([{"int": "-9223372036854775809"}])]))
    write(t, "bare_2_63.json", changeset([row([9223372036854775808])]))
    write(t, "bare_fraction.json", changeset([row([1.5])]))
    write(t, "hlc_zero.json", changeset([{"key": [1], "gen": 1, "stamp": ["0", 0], "row": True}]))
    write(t, "node_out_of_range.json", changeset([{"key": [1], "gen": 1, "stamp": [HLC, 1], "row": True}]))
    write(t, "lone_surrogate_value.json",
          '{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","tables":[{"name":"t",'
          '"key":["id"],"columns":["v"],"rows":[{"key":[1],"gen":1,"stamp":["%s",0],"row":true,'
          '"cols":[[0,"\\udc00"],[0,"\\ud800x"]]}]}],"upto":"1","nodes":["%s"]}' % (NODE_A, HLC, NODE_A))
    write(t, "nul_text.json", changeset([row(["\u0000"], [[0, "x\u0000"]])]))
    write(t, "duplicate_columns.json", changeset([row([1], [[0, 1], [1, 2], [0, 3]])], columns=("v", "v")))
    write(t, "duplicate_keys.json",
          '{"format":"lwwsync.changeset","version":1,"version":2,"origin":"%s","origin":"x","since":"0",'
          '"tables":[],"tables":{},"upto":"0","nodes":[]}' % NODE_A)
    write(t, "format_with_nul.json", changeset([], extra={"format": "lwwsync.changeset\u0000x", "tables": []}))
    write(t, "deep_nesting.json", changeset([row(["[" * 40 + "]" * 40])])
          .replace('"' + "[" * 40 + "]" * 40 + '"', "[" * 40 + "]" * 40))
    write(t, "bad_base64.json", changeset([row([{"bytes": "eA="}]), row([{"bytes": "e==="}])]))
    write(t, "wrong_version.json", changeset([], extra={"version": 2, "tables": []}))
    write(t, "truncated.json", PROTOCOL_CHANGESET[:200])
    write(t, "array_row_short.json", changeset([[[1], 1, HLC, 0]]))
    write(t, "array_row_nested_value.json", changeset([[[1], 1, HLC, 0, [[["x"]]]]]))
    write(t, "array_rows_before_columns.json",
          '{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","tables":[{"name":"t",'
          '"rows":[[[1],1,"%s",0,"x"]],"key":["id"],"columns":["v"]}],"upto":"1","nodes":["%s"]}' % (NODE_A, HLC, NODE_A))


# ------------------------------------------------------------ exchange

def exchanges():
    push = json.loads(PROTOCOL_CHANGESET)
    push["origin"] = NODE_B
    req = {"format": "lwwsync.exchange", "version": 1, "node": NODE_B, "received": "57",
           "received_floor": "40", "limit": 1000, "limit_bytes": 8388608, "clock": HLC, "push": push}
    t = "exchange_request"
    write(t, "protocol_example.json", compact(req))
    write(t, "hello.json", compact({"format": "lwwsync.exchange", "version": 1, "node": NODE_B}))
    for name, change in [("limits_max", {"limit": 1000000, "limit_bytes": 268435456}),
                         ("limits_min", {"limit": 1, "limit_bytes": 1024}),
                         ("limit_too_big", {"limit": 1000001}),
                         ("limit_bytes_too_small", {"limit_bytes": 1023}),
                         ("limit_2_63", {"limit": 9223372036854775807}),
                         ("clock_2_64_minus_1", {"clock": "18446744073709551615"}),
                         ("clock_2_64", {"clock": "18446744073709551616"}),
                         ("clock_number", {"clock": 12}),
                         ("floor_above_received", {"received": "1", "received_floor": "2"}),
                         ("push_null", {"push": None}),
                         ("push_id", {"push_id": "0123456789abcdef"}),
                         ("push_id_32", {"push_id": "f" * 32}),
                         ("push_id_33", {"push_id": "f" * 33}),
                         ("push_id_upper", {"push_id": "ABCDEF"}),
                         ("push_id_empty", {"push_id": ""}),
                         ("push_id_number", {"push_id": 12}),
                         ("forked", {"forked": True, "push": None}),
                         ("forked_number", {"forked": 1}),
                         ("compact", {"compact": True}),
                         ("compact_number", {"compact": 1}),
                         ("push_not_object", {"push": [1]})]:
        r = dict(req)
        r.update(change)
        write(t, name + ".json", compact(r))
    write(t, "deep_push.json", compact({"format": "lwwsync.exchange", "version": 1, "node": NODE_B})[:-1]
          + ',"push":' + "[" * 64 + "]" * 64 + "}")

    t = "exchange_response"
    resp = {"format": "lwwsync.exchange", "version": 1, "node": NODE_A, "acked": "31", "acked_floor": "31",
            "clock": "117681734028100000", "more": False,
            "applied": {"rows": 3, "received": 7, "applied": 5, "ignored": 2},
            "pull": json.loads(PROTOCOL_CHANGESET)}
    write(t, "protocol_example.json", compact(resp))
    for name, change in [("more", {"more": True, "pull": None}),
                         ("acked_floor_lower", {"acked": "100", "acked_floor": "7"}),
                         ("applied_huge", {"applied": {"rows": 18446744073709551615, "received": -1,
                                                       "applied": 1.5, "ignored": "2"}}),
                         ("applied_not_object", {"applied": [1, 2]}),
                         ("acked_missing", {"acked": None}),
                         ("more_number", {"more": 1}),
                         ("acked_id", {"acked_id": "00ff00ff00ff00ff"}),
                         ("acked_id_not_hex", {"acked_id": "xyz"}),
                         ("acked_id_long", {"acked_id": "a" * 40}),
                         ("acked_id_null", {"acked_id": [None]})]:
        r = dict(resp)
        r.update(change)
        r = {k: v for k, v in r.items() if v is not None}
        write(t, name + ".json", compact(r))
    hello = {"format": "lwwsync.exchange", "version": 1, "node": NODE_A, "acked": "0", "clock": HLC, "more": False}
    write(t, "hello_answer.json", compact(hello))


# ------------------------------------------------------------ http errors, options, json

def http_errors():
    t = "http_error"
    write(t, "postgrest.json", '{"code":"PGRST301","message":"JWT expired","details":null,"hint":null}')
    write(t, "gateway_400.json", '{"code":"22000","message":"invalid change set: tables[0].rows[3].gen: '
          'expected a positive integer below 2^53","details":null,"hint":null}')
    write(t, "message_not_string.json", '{"message":{"text":"x"}}')
    write(t, "message_empty.json", '{"message":""}')
    write(t, "message_control.json", '{"message":"a\\u0000b\\nc\\u001b[2J"}')
    write(t, "message_long.json", '{"message":"' + "\u00e9" * 700 + '"}')
    write(t, "html.txt", "<html><head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>\r\n")
    write(t, "empty.txt", "")
    write(t, "binary.bin", bytes(range(256)))
    write(t, "deep.json", "[" * 200 + "]" * 200)
    write(t, "deep_object.json", '{"a":' * 40 + "1" + "}" * 40)
    write(t, "duplicate_message.json", '{"message":"first","message":"second"}')


def options():
    t = "sync_options"
    write(t, "all.json", '{"batch_rows":5,"batch_bytes":4096,"token":"t0k","timeout_ms":7,"connect_timeout_ms":8,'
          '"ca_file":"/ca.pem","insecure":true,"gzip":false,"retries":0}')
    write(t, "empty.txt", "")
    write(t, "empty_object.json", "{}")
    for name, text in [("batch_rows_0", '{"batch_rows":0}'), ("batch_rows_max", '{"batch_rows":1000000}'),
                       ("batch_rows_too_big", '{"batch_rows":1000001}'),
                       ("batch_rows_2_63", '{"batch_rows":9223372036854775807}'),
                       ("batch_rows_2_64_minus_1", '{"batch_rows":18446744073709551615}'),
                       ("batch_rows_real", '{"batch_rows":1.0}'),
                       ("batch_bytes_bounds", '{"batch_bytes":1024,"batch_bytes":268435457}'),
                       ("timeout_max", '{"timeout_ms":86400000,"connect_timeout_ms":3600001}'),
                       ("retries_negative", '{"retries":-1}'), ("gzip_null", '{"gzip":null}'),
                       ("token_nul", '{"token":"a\\u0000b"}'), ("unknown", '{"bogus":1}'),
                       ("not_object", '[{"batch_rows":5}]'), ("deep", '{"token":' + "[" * 40 + "]" * 40 + "}"),
                       ("lone_surrogate_key", '{"\\udc00":1}')]:
        write(t, name + ".json", text)


def jsons():
    t = "json"
    write(t, "numbers.json", "[0,-0,1,-1,9007199254740991,9007199254740992,-9007199254740993,"
          "9223372036854775807,-9223372036854775808,9223372036854775808,18446744073709551615,"
          "0.1,-0.0,1.5,2.5,1e22,1.25e-20,123456789012345,0.000123456789012345]")
    write(t, "depth_32.json", "[" * 32 + "]" * 32)
    write(t, "depth_33.json", "[" * 33 + "]" * 33)
    write(t, "strings.json", '["\\u0000","\\ud83d\\ude00","\\/\\b\\f\\n\\r\\t","\u00e9\u2713",""]')
    write(t, "duplicate_keys.json", '{"a":1,"a":2,"":3,"":{}}')
    write(t, "bom.json", b"\xef\xbb\xbf{\"a\":[true,false,null]}")
    write(t, "invalid_utf8.json", b'["\xc3\x28","\xed\xa0\x80","\xf4\x90\x80\x80"]')
    write(t, "lone_surrogate.json", '["\\ud800","\\udc00x"]')


# ------------------------------------------------------------ jwt

SECRET = b"fuzz-secret-0123456789abcdef-0123456789abcdef"  # fuzz_jwt.cpp's


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(header, payload, secret=SECRET):
    signed = b64u(header.encode()) + b"." + b64u(payload.encode())
    return signed + b"." + b64u(hmac.new(secret, signed, hashlib.sha256).digest())


def jwts():
    t = "jwt"
    hdr = '{"alg":"HS256","typ":"JWT"}'
    now = struct.pack("<q", 1700000000)
    # mode 0: the token as it is
    write(t, "m0_valid.bin", b"\x00" + token(hdr, '{"role":"app","exp":1800000000}'))
    write(t, "m0_expired.bin", b"\x00" + token(hdr, '{"role":"app","exp":1600000000}'))
    write(t, "m0_alg_none.bin", b"\x00" + b64u(b'{"alg":"none"}') + b"." + b64u(b'{"role":"postgres"}') + b".")
    write(t, "m0_two_parts.bin", b"\x00" + b64u(hdr.encode()) + b"." + b64u(b"{}"))
    write(t, "m0_padding.bin", b"\x00" + token(hdr, "{}").replace(b".", b"=.", 1))
    write(t, "m0_wrong_secret.bin", b"\x00" + token(hdr, '{"role":"app"}', b"other"))
    # mode 1: header and payload JSON, signed here
    for i, (h, p) in enumerate([(hdr, '{"role":"app"}'), ('{"alg":"HS256","crit":["exp"]}', "{}"),
                                ('{"alg":"HS256","alg":"none"}', "{}"), ('{"alg":"RS256"}', "{}"),
                                ('{"alg":"HS256\\u0000"}', "{}"), ("[]", "{}"), (hdr, "[" * 40 + "]" * 40)]):
        write(t, "m1_%d.bin" % i, b"\x01" + now + h.encode() + b"\n" + p.encode())
    # mode 2: claims under a valid header
    for i, p in enumerate(['{"role":"app","exp":1800000000,"nbf":1600000000}', '{"role":""}',
                           '{"role":"a\\u0000b"}', '{"role":"app","role":"postgres"}', '{"exp":"1800000000"}',
                           '{"exp":9223372036854775807,"nbf":-9223372036854775808}', '{"exp":1e300}',
                           '{"role":"\\udc00"}', '{"sub":"' + "x" * 500 + '","role":"app"}', "{}", "null"]):
        write(t, "m2_%d.bin" % i, b"\x02" + now + p.encode())
    for i, n in enumerate([0, -1, 2**63 - 1, -2**63]):
        write(t, "m2_now_%d.bin" % i, b"\x02" + struct.pack("<q", n) + b'{"exp":1700000000,"nbf":1700000000}')
    # mode 3: base64url text taken as it is
    for i, (h, p) in enumerate([(b64u(hdr.encode()), b64u(b'{"role":"app"}')),
                                (b64u(hdr.encode()) + b"=", b64u(b"{}")),
                                (b64u(hdr.encode())[:-1] + b"B", b64u(b"{}")),  # non-zero unused bits
                                (b64u(hdr.encode()), b"e30+/"), (b"", b"")]):
        write(t, "m3_%d.bin" % i, b"\x03" + now + h + b"\n" + p)


# ------------------------------------------------------------ row codec

def row_codec():
    t = "row_codec"
    rng = random.Random(1234)
    write(t, "empty.bin", b"")
    for n in (4, 16, 64, 96, 200):
        write(t, "random_%d.bin" % n, bytes(rng.randrange(256) for _ in range(n)))
    # A blob of well-formed entries (varint column, tag, 8-byte hlc, varint node, varint seq)
    # followed by the fields FuzzedDataProvider takes from the end.
    entries = b"\x00\x01" + struct.pack("<Q", 117681734027968512) + b"\x00\x05" + b"\x02\x00" + b"\x7f\x01" \
        + struct.pack("<Q", 1) + b"\x81\x01\x80\x80\x04"
    write(t, "entries.bin", entries + bytes(range(40)))
    write(t, "varint_too_long.bin", b"\xff" * 12 + bytes(range(40)))


def main():
    for d in ("changeset", "exchange_request", "exchange_response", "http_error", "jwt", "sync_options",
              "row_codec", "json"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
    changesets()
    exchanges()
    http_errors()
    options()
    jsons()
    jwts()
    row_codec()


if __name__ == "__main__":
    main()
