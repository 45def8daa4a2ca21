// lwwsync core: node ids. A node id is a random (version 4) UUID made once per
// database; it breaks ties between equal clocks, so it is compared as 16 bytes.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace lww {

struct NodeId {
    std::array<uint8_t, 16> bytes{};

    static NodeId random_v4();
    // A node id a database proves it owns: derived from a secret key only it
    // holds (SHA-256, as a version 8 UUID). Servers refuse such a node to a
    // caller that cannot show the key, so nobody who merely saw the id (in a
    // pull's "nodes") can sync as it (docs/SECURITY.md).
    static constexpr size_t kKeyBytes = 32;
    static std::string random_key();
    static NodeId from_key(std::string_view key);
    bool keyed() const { return (bytes[6] >> 4) == 8; }
    // Accepts the 36-character 8-4-4-4-12 hex form, either case; throws lww::Error.
    static NodeId parse(std::string_view text);
    // Non-throwing variant for validation paths. Both refuse the nil UUID.
    static bool try_parse(std::string_view text, NodeId& out);
    std::string str() const;  // lowercase 8-4-4-4-12

    bool operator==(const NodeId& o) const { return bytes == o.bytes; }
    bool operator!=(const NodeId& o) const { return bytes != o.bytes; }
    bool operator<(const NodeId& o) const { return bytes < o.bytes; }
};

}  // namespace lww
