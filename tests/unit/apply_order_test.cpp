#include <gtest/gtest.h>

#include <algorithm>

#include "../../common/apply_order.h"

using lww::parents_first;

static size_t pos(const std::vector<size_t>& order, size_t x) {
    return std::find(order.begin(), order.end(), x) - order.begin();
}

TEST(ApplyOrder, ChainOfThreeInAnyInputOrder) {
    // 0 = grandchild -> 2 = child -> 1 = parent
    auto o = parents_first({{2}, {}, {1}});
    ASSERT_EQ(o.size(), 3u);
    EXPECT_LT(pos(o, 1), pos(o, 2));
    EXPECT_LT(pos(o, 2), pos(o, 0));
}

TEST(ApplyOrder, IndependentTablesKeepInputOrder) {
    EXPECT_EQ(parents_first({{}, {}, {}}), (std::vector<size_t>{0, 1, 2}));
}

TEST(ApplyOrder, SelfReferenceAndCyclesPlaceEveryTableOnce) {
    auto o = parents_first({{0}, {2}, {1}, {1}});  // 0 self; 1 <-> 2; 3 under 1
    ASSERT_EQ(o.size(), 4u);
    std::vector<size_t> sorted = o;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<size_t>{0, 1, 2, 3}));
    EXPECT_LT(pos(o, 1), pos(o, 3));
}

TEST(ApplyOrder, OutOfRangeParentsAreIgnored) { EXPECT_EQ(parents_first({{7}, {0}}), (std::vector<size_t>{0, 1})); }
