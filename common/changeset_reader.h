// lwwsync core, internal: reading change sets as the parser goes. A change
// set is read from SAX events straight into a ChangeSet — never a DOM of the
// whole document — alone (decode_changeset) or as a member of an exchange
// document (parse_json_with_sets). Internal to the core: RapidJSON stays out
// of the public headers.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "changeset.h"

namespace lww {

// A top-level member of an exchange document read as a change set.
struct EmbeddedSet {
    const char* name = nullptr;
    bool present = false;  // the member was there...
    bool null = false;     // ...and null
    std::string error;     // what is wrong with it ("" when nothing)
    ChangeSet set;
};

// Parses an exchange document into `doc`, except the top-level members
// named by `sets`, which are read into them while parsing (`doc` holds null
// in their place). False with `error` set as parse_json sets it.
bool parse_json_with_sets(rapidjson::Document& doc, std::string_view text, std::string& error,
                          std::vector<EmbeddedSet*> sets);

// Keys as JSON arrays of values (change-set value form): the keys of a
// re-snapshot probe. Each non-empty, at most 32 values, none NULL, all of
// one arity; `what` names the field in errors.
std::vector<std::vector<Value>> decode_keys(const rapidjson::Value& arr, const char* what);

}  // namespace lww
