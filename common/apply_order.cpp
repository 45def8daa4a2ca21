#include "apply_order.h"

#include <algorithm>

namespace lww {

// Kahn's algorithm, always taking the lowest ready index, so the result is
// deterministic. When only cycles remain, the lowest remaining index goes
// next (its unresolved parents are on the cycle).
std::vector<size_t> parents_first(const std::vector<std::vector<size_t>>& parents) {
    const size_t n = parents.size();
    std::vector<size_t> missing(n, 0);  // parents not yet placed
    std::vector<std::vector<size_t>> children(n);
    for (size_t i = 0; i < n; ++i) {
        std::vector<size_t> ps = parents[i];
        std::sort(ps.begin(), ps.end());
        ps.erase(std::unique(ps.begin(), ps.end()), ps.end());
        for (size_t p : ps)
            if (p < n && p != i) {
                ++missing[i];
                children[p].push_back(i);
            }
    }
    std::vector<size_t> order;
    order.reserve(n);
    std::vector<bool> placed(n, false);
    while (order.size() < n) {
        size_t next = n;
        for (size_t i = 0; i < n && next == n; ++i)
            if (!placed[i] && missing[i] == 0) next = i;
        if (next == n)  // a cycle: break it at its lowest index
            for (size_t i = 0; i < n && next == n; ++i)
                if (!placed[i]) next = i;
        placed[next] = true;
        order.push_back(next);
        for (size_t c : children[next])
            if (missing[c]) --missing[c];
    }
    return order;
}

}  // namespace lww
