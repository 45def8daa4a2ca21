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
// another principal.
void bind_node(const NodeId& node, const Principal& p);

// The nodes whose stamps `p` may not introduce into this database: this
// database's own node and nodes bound to other principals, among those that
// stamp registers of `cs`. Empty for a relay.
class ForeignStamps {
public:
    ForeignStamps() = default;
    ForeignStamps(const ChangeSet& cs, const Principal& p, const NodeId& self);
    // Throws a permission error when `node` is foreign.
    void check(const NodeId& node) const;
    bool empty() const { return foreign_.empty(); }

private:
    std::unordered_set<std::string> foreign_;  // NodeId bytes
};

}  // namespace lww::pg
