#include "principal.h"

#include "../../common/json.h"

extern "C" {
#include "utils/acl.h"
}

namespace lww::pg {

namespace {

std::string node_key(const NodeId& id) { return std::string(id.bytes.begin(), id.bytes.end()); }

// The "sub" claim the gateway (or PostgREST) put in request.jwt.claims.
std::string jwt_subject() {
    const char* v = nullptr;
    pg_call([&] { v = GetConfigOption("request.jwt.claims", true, false); });
    const std::string claims = v ? v : "";
    if (claims.empty()) return {};
    rapidjson::Document d;
    std::string error;
    if (!parse_json(d, claims, error) || !d.IsObject()) return {};
    auto sub = d.FindMember("sub");
    if (sub == d.MemberEnd() || sub->value.IsNull()) return {};
    if (sub->value.IsString()) return std::string(sub->value.GetString(), sub->value.GetStringLength());
    if (sub->value.IsInt64()) return std::to_string(sub->value.GetInt64());
    throw permission_denied("the token's \"sub\" claim must be a string or an integer");
}

}  // namespace

std::string Principal::describe() const {
    return subject.empty() ? "role " + role : "role " + role + " (subject " + subject + ")";
}

Principal current_principal() {
    Principal p;
    Oid user = InvalidOid;
    const char* role = nullptr;
    pg_call([&] {
        user = GetUserId();
        role = GetUserNameFromId(user, false);
        p.relay = superuser_arg(user);
    });
    p.role = role;
    p.subject = jwt_subject();
    if (!p.relay) {
        AsMetadataOwner owner;
        const SpiResult res =
            run(prepare("SELECT 1 FROM lwwsync.relays r JOIN pg_catalog.pg_roles a ON a.rolname = r.role"
                        " WHERE pg_catalog.pg_has_role($1, a.oid, 'MEMBER') LIMIT 1",
                        {OIDOID}),
                {Param{OIDOID, ObjectIdGetDatum(user), false}}, true);
        p.relay = !res.empty();
    }
    return p;
}

void bind_node(const NodeId& node, const Principal& p, bool proven, bool record) {
    AsMetadataOwner owner;
    const std::vector<Param> args = {text_param(node.str()), text_param(p.role), text_param(p.subject)};
    SPIPlanPtr get = prepare("SELECT role::text, subject FROM lwwsync.bindings WHERE node = $1::uuid", {TEXTOID});
    SpiResult bound = run(get, {args[0]}, false);
    if (bound.empty()) {
        if (!run_sql("SELECT 1 FROM lwwsync.state WHERE key = 'bind_new_nodes' AND value = '0'", true).empty())
            throw permission_denied("node " + node.str() +
                                    " is not enrolled on this server (lww_config('bind_new_nodes') "
                                    "is 0): an administrator binds it in lwwsync.bindings first");
        if (node.keyed() && !proven)
            throw permission_denied("node " + node.str() +
                                    " is derived from a key: it must sync through lww_exchange, "
                                    "showing its key, before its change sets are applied here");
        // A round trip that pushes nothing: its first push binds the node.
        if (!record) return;
        // First use: the node is this principal's from now on. A concurrent
        // first use by another principal waits on the key and then loses.
        run(prepare("INSERT INTO lwwsync.bindings(node, role, subject) VALUES ($1::uuid, $2::name, $3)"
                    " ON CONFLICT (node) DO NOTHING",
                    {TEXTOID, TEXTOID, TEXTOID}),
            args, false);
        bound = run(get, {args[0]}, false);
    }
    if (bound.size() != 1) throw Error("cannot record the binding of node " + node.str(), ErrorKind::internal);
    if (bound.text(0, 0) != p.role || bound.text(0, 1) != p.subject)
        throw permission_denied("node " + node.str() + " belongs to another principal; " + p.describe() +
                                " may only sync as its own node (a copied database needs a new node id)");
}

OwnStamps::OwnStamps(const ChangeSet& cs, const Principal& p) {
    own_.insert(node_key(cs.origin));
    std::unordered_set<std::string> seen{node_key(cs.origin)};
    std::string list;
    auto note = [&](const NodeId& n) {
        if (seen.insert(node_key(n)).second) list += (list.empty() ? "" : ",") + n.str();
    };
    for (const auto& t : cs.tables)
        for (const auto& r : t.rows) {
            if (r.has_row) note(r.row.node);
            for (const auto& c : r.cols) note(c.stamp.node);
        }
    if (list.empty()) return;
    AsMetadataOwner owner;
    const SpiResult bound = run(
        prepare("SELECT node::text FROM lwwsync.bindings"
                " WHERE node = ANY (pg_catalog.string_to_array($1, ',')::uuid[]) AND role = $2::name AND subject = $3",
                {TEXTOID, TEXTOID, TEXTOID}),
        {text_param(list), text_param(p.role), text_param(p.subject)}, true);
    for (uint64_t i = 0; i < bound.size(); ++i) own_.insert(node_key(NodeId::parse(bound.text(i, 0))));
    // Node ids this database itself used before a restore, a failover or
    // lww_reset_node: devices pulled registers stamped by them that this
    // database may have lost; anyone may bring those back (as any change,
    // within the caller's rights), stamped before the id was retired.
    if (run_sql("SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'retired'"
                " AND relnamespace = 'lwwsync'::pg_catalog.regnamespace",
                true)
            .empty())
        return;
    const SpiResult retired = run(prepare("SELECT node::text, hlc FROM lwwsync.retired WHERE node = ANY "
                                          "(pg_catalog.string_to_array($1, ',')::uuid[])",
                                          {TEXTOID}),
                                  {text_param(list)}, true);
    for (uint64_t i = 0; i < retired.size(); ++i) {
        const std::string k = node_key(NodeId::parse(retired.text(i, 0)));
        own_.insert(k);
        retired_[k] = static_cast<uint64_t>(retired.integer(i, 1));
    }
}

bool OwnStamps::has(const NodeId& node) const { return own_.count(node_key(node)) > 0; }

bool OwnStamps::has(const Stamp& stamp) const {
    const std::string k = node_key(stamp.node);
    auto r = retired_.find(k);
    if (r != retired_.end()) return stamp.hlc <= r->second;
    return own_.count(k) > 0;
}

}  // namespace lww::pg
