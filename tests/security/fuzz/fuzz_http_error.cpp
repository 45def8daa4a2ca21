// libFuzzer target: lww::http_error_message, which turns the body of an HTTP
// error answer (from any server, or anything in between) into the message a
// failed lww_sync shows. It must not throw anything but lww::Error, and its
// result is short, never empty, valid UTF-8 and free of control characters
// (it ends up in SQLite/Postgres error messages, logs and terminals).
#include <string>

#include "../../../common/http_client.h"
#include "../../../common/value.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string msg;
    if (!fuzz::only_lww_errors("http_error_message", [&] { msg = lww::http_error_message(fuzz::as_text(data, size)); }))
        return 0;
    FUZZ_CHECK(!msg.empty());
    FUZZ_CHECK(msg.size() <= 1200);  // 4 x the 300 bytes shown of a non-JSON body
    FUZZ_CHECK(lww::valid_utf8(msg));
    for (char c : msg) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    return 0;
}
