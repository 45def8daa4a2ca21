// libFuzzer target: lww::decode_request, what a server parses from any
// caller (the body of POST /rpc/lww_exchange, lww_exchange(json)). When it
// decodes, the request encodes and decodes to the same request.
#include <optional>

#include "../../../common/exchange.h"
#include "changeset_eq.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::optional<lww::ParsedRequest> r;
    if (!fuzz::only_lww_errors("decode_request", [&] { r = lww::decode_request(fuzz::as_text(data, size)); })) return 0;

    lww::ExchangeRequest out;
    out.node = r->node;
    out.received = r->received;
    out.seen = r->seen;
    out.limits = r->limits;
    out.clock = r->clock;
    out.push_id = r->push_id;
    out.forked = r->forked;
    std::string text;
    fuzz::must_not_throw("encode_request of a decoded request", [&] {
        if (r->push) out.push = lww::encode_changeset(*r->push);
        text = lww::encode_request(out);
    });
    std::optional<lww::ParsedRequest> again;
    fuzz::must_not_throw("decode_request(encode_request(decoded))", [&] { again = lww::decode_request(text); });
    FUZZ_CHECK(again->node == r->node);
    FUZZ_CHECK(again->received.has_value() == r->received.has_value());
    FUZZ_CHECK(!r->received ||
               (again->received->received == r->received->received && again->received->floor == r->received->floor));
    FUZZ_CHECK(again->limits.rows == r->limits.rows && again->limits.bytes == r->limits.bytes);
    FUZZ_CHECK(again->clock == r->clock);
    // `seen` travels only without `received` (which carries the same floor).
    FUZZ_CHECK(again->seen == (r->received ? 0 : r->seen));
    FUZZ_CHECK(again->push.has_value() == r->push.has_value());
    FUZZ_CHECK(!r->push || fuzz::same_changeset(*again->push, *r->push));
    // The documented bounds hold for whatever was accepted.
    FUZZ_CHECK(r->limits.rows >= 1 && r->limits.rows <= lww::kMaxBatchRows);
    FUZZ_CHECK(r->limits.bytes >= 1024 && r->limits.bytes <= lww::kMaxBatchBytes);
    FUZZ_CHECK(!r->received || r->received->floor <= r->received->received);
    // A push id travels with its push; it is 1 to 32 lowercase hex digits.
    FUZZ_CHECK(again->push_id == (r->push ? r->push_id : std::string()));
    FUZZ_CHECK(again->forked == r->forked);
    FUZZ_CHECK(r->push_id.size() <= lww::kMaxPushIdChars);
    for (char c : r->push_id) FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    return 0;
}
