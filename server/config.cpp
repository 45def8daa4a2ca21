#include "config.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace lwwgw {
namespace {

struct OptionSpec {
    const char* key;  // flag name without "--", also the config-file key
    const char* def;  // shown by --help; nullptr: unset by default
    const char* help;
};

// One table drives flags, environment names (LWWSYNC_ + key in upper case,
// '-' -> '_'), config-file keys and --help, so they cannot drift apart.
const OptionSpec kOptions[] = {
    {"db-uri", nullptr, "PostgreSQL connection URI or key=value string (required)"},
    {"db-read-uri", nullptr,
     "a hot standby of db-uri: exchanges that push nothing run there, read-only (unset: all on db-uri)"},
    {"db-anon-role", nullptr, "role for requests without a token (unset: they get 401)"},
    {"db-pool", "10", "maximum number of PostgreSQL connections"},
    {"db-pool-acquisition-timeout", "10", "seconds a request waits for a free connection before 503"},
    {"jwt-secret", nullptr, "HS256 secret, at least 32 characters (unset: requests with a token get 401)"},
    {"server-host", "127.0.0.1", "address to listen on"},
    {"server-port", "3000", "TCP port to listen on"},
    {"max-body-bytes", "67108864", "largest request body in bytes, after gzip decompression (413 beyond)"},
    {"db-statement-timeout-ms", "30000",
     "statement_timeout of each exchange in milliseconds, 0 keeps the database's setting (504 beyond)"},
    {"db-lock-timeout-ms", "10000",
     "lock_timeout of each exchange in milliseconds, 0 keeps the database's setting (503 beyond)"},
    {"server-request-timeout", "60",
     "seconds a client has to send one whole request (headers and body), and to read one response"},
    {"server-idle-timeout", "10", "seconds a connection may stay silent (also between keep-alive requests)"},
    {"server-max-connections", "1000", "open client connections at most; more are closed at once"},
    {"server-max-connections-per-ip", "32",
     "open connections per client address at most, 0 for no cap (behind a proxy: 0)"},
};

std::string env_name(const std::string& key) {
    std::string e = "LWWSYNC_";
    for (char c : key) e += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return e;
}

const OptionSpec* find_option(const std::string& key) {
    for (const auto& o : kOptions)
        if (key == o.key) return &o;
    return nullptr;
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// PostgREST config lines: `key = "string"` or `key = 123`, '#' comments.
void read_config_file(const std::string& path, std::map<std::string, std::string>& values,
                      void (*warn)(const std::string&)) {
    std::ifstream in(path);
    if (!in) throw ConfigError("cannot read config file " + path);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        const std::string where = path + ":" + std::to_string(n) + ": ";
        const std::string t = trim(line);
        if (t.empty() || t[0] == '#') continue;
        const auto eq = t.find('=');
        const std::string head = eq == std::string::npos ? "" : trim(t.substr(0, eq));
        if (head.empty()) throw ConfigError(where + "expected key = value");
        std::string rest = trim(t.substr(eq + 1)), value;
        if (!rest.empty() && rest[0] == '"') {
            size_t i = 1;
            for (; i < rest.size() && rest[i] != '"'; ++i) {
                if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
                value += rest[i];
            }
            if (i >= rest.size()) throw ConfigError(where + "unterminated string");
            const std::string tail = trim(rest.substr(i + 1));
            if (!tail.empty() && tail[0] != '#') throw ConfigError(where + "unexpected text after the string");
        } else {
            value = trim(rest.substr(0, rest.find('#')));
            if (value.empty()) throw ConfigError(where + "missing value for " + head);
        }
        if (!find_option(head)) {
            warn(where + "ignoring unknown key \"" + head + "\"");
            continue;
        }
        values[head] = value;
    }
}

unsigned long long parse_number(const std::string& key, const std::string& v, unsigned long long lo,
                                unsigned long long hi) {
    unsigned long long n = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size() || n < lo || n > hi)
        throw ConfigError(key + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                          ", got \"" + v + "\"");
    return n;
}

}  // namespace

bool reserved_role(const std::string& role) {
    std::string r;
    for (char ch : role) r += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    // SET ROLE none resets to the session user; the others are keywords or
    // pseudo-roles of the role grammar (CURRENT_USER, PUBLIC...), and pg_*
    // names belong to PostgreSQL's predefined roles (pg_read_server_files...).
    static const char* const kReserved[] = {"none",         "public",       "default",      "all",
                                            "current_user", "current_role", "session_user", "user"};
    for (const char* k : kReserved)
        if (r == k) return true;
    return r.rfind("pg_", 0) == 0;
}

std::string usage() {
    std::ostringstream u;
    u << "Usage: lwwsync-server [OPTION...]\n"
         "HTTP gateway for lwwsync: POST /rpc/lww_exchange runs lww_exchange(json) in PostgreSQL\n"
         "as the role of the caller's JWT; GET /health checks the database.\n\n"
         "Every option can also be set by an environment variable or a config file line\n"
         "`key = \"value\"`; flags win over the environment, which wins over the file.\n\n";
    auto row = [&](const std::string& flag, const std::string& env, const std::string& text) {
        u << "  " << flag << "\n      " << env << "\n      " << text << "\n";
    };
    for (const auto& o : kOptions)
        row(std::string("--") + o.key + " VALUE", env_name(o.key),
            std::string(o.help) + (o.def ? std::string(" [default: ") + o.def + "]" : ""));
    row("--config FILE", "LWWSYNC_CONFIG", "read options from FILE (PostgREST syntax; unknown keys are ignored)");
    u << "  --help      print this help and exit\n"
         "  --version   print the version and exit\n";
    return u.str();
}

Action load_config(int argc, char** argv, Config& out, void (*warn)(const std::string&)) {
    std::map<std::string, std::string> flags, values;
    std::string config_file;
    bool config_flag = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") return Action::Help;
        if (arg == "--version" || arg == "-V") return Action::Version;
        if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument \"" + arg + "\"");
        std::string key = arg.substr(2), value;
        const auto eq = key.find('=');
        const bool inline_value = eq != std::string::npos;
        if (inline_value) {
            value = key.substr(eq + 1);
            key.resize(eq);
        }
        if (key != "config" && !find_option(key)) throw ConfigError("unknown option --" + key);
        if (!inline_value) {
            if (i + 1 >= argc) throw ConfigError("option --" + key + " needs a value");
            value = argv[++i];
        }
        if (key == "config") {
            config_file = value;
            config_flag = true;
        } else {
            flags[key] = value;
        }
    }
    if (!config_flag)
        if (const char* e = std::getenv("LWWSYNC_CONFIG")) config_file = e;
    if (!config_file.empty()) read_config_file(config_file, values, warn);
    for (const auto& o : kOptions)
        if (const char* e = std::getenv(env_name(o.key).c_str())) values[o.key] = e;
    for (auto& [k, v] : flags) values[k] = v;

    auto get = [&](const char* key) {
        auto it = values.find(key);
        return it == values.end() ? std::string() : it->second;
    };
    auto number = [&](const char* key, unsigned long long lo, unsigned long long hi, unsigned long long def) {
        const std::string v = get(key);
        return v.empty() ? def : parse_number(key, v, lo, hi);
    };

    Config c;
    c.db_uri = get("db-uri");
    if (c.db_uri.empty())
        throw ConfigError("db-uri is required (--db-uri, LWWSYNC_DB_URI or db-uri in the config file)");
    c.db_read_uri = get("db-read-uri");
    c.db_anon_role = get("db-anon-role");
    c.jwt_secret = get("jwt-secret");
    // PostgREST's rule: a shorter HS256 secret can be brute-forced offline from any one token.
    if (!c.jwt_secret.empty() && c.jwt_secret.size() < 32)
        throw ConfigError("jwt-secret must be at least 32 characters long (it has " +
                          std::to_string(c.jwt_secret.size()) + ")");
    if (!get("server-host").empty()) c.server_host = get("server-host");
    c.server_port = static_cast<int>(number("server-port", 1, 65535, 3000));
    c.db_pool = number("db-pool", 1, 1000, 10);
    c.db_pool_acquisition_timeout = number("db-pool-acquisition-timeout", 1, 3600, 10);
    c.max_body_bytes = number("max-body-bytes", 1, 1ULL << 40, c.max_body_bytes);
    c.db_statement_timeout_ms = number("db-statement-timeout-ms", 0, 86400000, c.db_statement_timeout_ms);
    c.db_lock_timeout_ms = number("db-lock-timeout-ms", 0, 86400000, c.db_lock_timeout_ms);
    c.server_request_timeout = number("server-request-timeout", 1, 86400, c.server_request_timeout);
    c.server_idle_timeout = number("server-idle-timeout", 1, 86400, c.server_idle_timeout);
    c.server_max_connections = number("server-max-connections", 1, 1000000, c.server_max_connections);
    c.server_max_connections_per_ip =
        number("server-max-connections-per-ip", 0, 1000000, c.server_max_connections_per_ip);
    if (!c.db_anon_role.empty() && reserved_role(c.db_anon_role))
        throw ConfigError("db-anon-role \"" + c.db_anon_role + "\" is a reserved role name");
    out = std::move(c);
    return Action::Run;
}

}  // namespace lwwgw
