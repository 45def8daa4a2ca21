// lwwsync core: the one way JSON from elsewhere is read. RapidJSON's
// iterative parser (no recursion, so no stack to exhaust), exact doubles,
// validated UTF-8, and a bound on nesting depth checked while parsing, so a
// document of a million '[' is refused after 64 of them instead of building
// a million-level DOM. Internal to the core and the gateway (not in public
// headers).
#pragma once
#include <string>
#include <string_view>

#include <rapidjson/document.h>

namespace lww {

// lwwsync documents nest 6 levels deep (exchange > push > tables > rows > cols > value).
constexpr unsigned kMaxJsonDepth = 32;

// Parses `text` into `doc`. False with `error` set ("malformed JSON at
// offset N: …" or "JSON nested deeper than N levels"); `doc` is then null.
bool parse_json(rapidjson::Document& doc, std::string_view text, std::string& error,
                unsigned max_depth = kMaxJsonDepth);

}  // namespace lww
