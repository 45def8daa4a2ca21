// libFuzzer target: lww::decode_response, what a client parses from the
// server it syncs with (or whatever answers at that URL). When it decodes,
// the response encodes and decodes to the same response.
#include <optional>

#include "../../../common/exchange.h"
#include "changeset_eq.h"
#include "fuzz_common.h"

namespace {
bool same_counts(const lww::ApplyCounts& a, const lww::ApplyCounts& b) {
    return a.rows == b.rows && a.received == b.received && a.applied == b.applied && a.ignored == b.ignored;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::optional<lww::ParsedResponse> r;
    if (!fuzz::only_lww_errors("decode_response", [&] { r = lww::decode_response(fuzz::as_text(data, size)); }))
        return 0;

    lww::ExchangeResponse out;
    out.node = r->node;
    out.acked = r->acked;
    out.clock = r->clock;
    out.more = r->more;
    out.applied = r->applied;
    out.acked_id = r->acked_id;
    std::string text;
    fuzz::must_not_throw("encode_response of a decoded response", [&] {
        if (r->pull) out.pull = lww::encode_changeset(*r->pull);
        text = lww::encode_response(out);
    });
    std::optional<lww::ParsedResponse> again;
    fuzz::must_not_throw("decode_response(encode_response(decoded))", [&] { again = lww::decode_response(text); });
    FUZZ_CHECK(again->node == r->node);
    FUZZ_CHECK(again->acked.received == r->acked.received && again->acked.floor == r->acked.floor);
    FUZZ_CHECK(again->acked.floor <= again->acked.received);
    FUZZ_CHECK(again->clock == r->clock && again->more == r->more);
    FUZZ_CHECK(again->acked_id == r->acked_id && r->acked_id.size() <= lww::kMaxPushIdChars);
    for (char c : r->acked_id) FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    FUZZ_CHECK(again->applied.has_value() == r->applied.has_value());
    FUZZ_CHECK(!r->applied || same_counts(*again->applied, *r->applied));
    FUZZ_CHECK(again->pull.has_value() == r->pull.has_value());
    FUZZ_CHECK(!r->pull || fuzz::same_changeset(*again->pull, *r->pull));
    return 0;
}
