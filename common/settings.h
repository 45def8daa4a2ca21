// lwwsync core: the settings lww_config reads and writes, one table for both
// engines (a setting one engine does not have is unknown there).
#pragma once
#include <cstdint>
#include <string>

namespace lww {

enum class Engine : unsigned { postgres = 1, sqlite = 2 };

struct Setting {
    const char* name;
    int64_t dflt, min, max;
    unsigned engines;  // Engine bits
};

// The setting `name` of `engine`; throws Error(bad_input) naming the known ones.
const Setting& find_setting(const std::string& name, Engine engine);
// `value` if it is in the setting's range; throws Error(bad_input) otherwise.
int64_t check_setting(const Setting& s, int64_t value);

}  // namespace lww
