// PostgreSQL adapter: who is calling, and what that lets them do with node
// ids (docs/SECURITY.md).
//
// A principal is the Postgres role the call runs as (current_user: the JWT
// role behind the gateway) plus, when the gateway set request.jwt.claims,
// the token's "sub". A node id belongs to the principal that first used it:
// lww_exchange binds the caller's node, and lww_apply by a non-relay role
// binds the change set's origin. Relays (superusers, members of a role in
// lwwsync.relays) are other lwwsync servers: they may forward registers
// stamped by any node.
#pragma once
#include "spi.h"

#include "../../common/changeset.h"

#include <unordered_map>
#include <unordered_set>

namespace lww::pg {

struct Principal {
    std::string role;     // current_user
    std::string subject;  // request.jwt.claims ->> 'sub', or empty
    bool relay = false;
    std::string describe() const;  // for messages: role, and sub when there is one
};

// The principal of the current call (reads the role and the claims now).
Principal current_principal();

// Binds `node` to `p`, or throws a permission error when it belongs to
// another principal. A node id derived from a key (NodeId::keyed) is bound
// only when the caller showed the key (`proven`: lww_exchange checks it).
// `record` false only checks: an unbound node stays unbound (read-only).
void bind_node(const NodeId& node, const Principal& p, bool proven = false, bool record = true);

// The nodes whose registers `p` may bring into this database: the set's
// origin (bound to `p`) and the other nodes bound to `p` (its other devices),
// among those that stamp registers of `cs`. Any other node's register that
// would win is refused: an honest client only echoes those, and echoes never
// win. (Relays may bring any; they are not asked.)
class OwnStamps {
public:
    OwnStamps() = default;
    OwnStamps(const ChangeSet& cs, const Principal& p);
    bool has(const NodeId& node) const;
    // The same for one register: a retired node id of this database only
    // for stamps from before its retirement.
    bool has(const Stamp& stamp) const;

private:
    std::unordered_set<std::string> own_;                // NodeId bytes
    std::unordered_map<std::string, uint64_t> retired_;  // retired node -> its last hlc
};

}  // namespace lww::pg
