// libFuzzer target: lww::decode_changeset on arbitrary bytes (a change set
// arrives from any peer). When it decodes, encoding it and decoding that
// must give the same set, and encoding is canonical (a second encode gives
// the same text).
#include <optional>

#include "changeset_eq.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::optional<lww::ChangeSet> cs;
    if (!fuzz::only_lww_errors("decode_changeset", [&] { cs = lww::decode_changeset(fuzz::as_text(data, size)); }))
        return 0;

    std::string text;
    fuzz::must_not_throw("encode_changeset of a decoded set", [&] { text = lww::encode_changeset(*cs); });
    std::optional<lww::ChangeSet> again;
    fuzz::must_not_throw("decode_changeset(encode_changeset(decoded))", [&] { again = lww::decode_changeset(text); });
    FUZZ_CHECK(fuzz::same_changeset(*cs, *again));
    std::string text2;
    fuzz::must_not_throw("encode_changeset of a re-read set", [&] { text2 = lww::encode_changeset(*again); });
    FUZZ_CHECK(text2 == text);
    return 0;
}
