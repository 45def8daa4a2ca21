#include <gtest/gtest.h>

#include "../../common/error.h"
#include "../../common/hlc.h"

using namespace lww;

TEST(Hlc, PacksMillisOverCounter) {
    uint64_t h = hlc_pack(1'700'000'000'000ULL, 7);
    EXPECT_EQ(hlc_millis(h), 1'700'000'000'000ULL);
    EXPECT_EQ(hlc_counter(h), 7);
}

TEST(Hlc, FollowsWallClockWhenItMovesForward) {
    HybridClock c;
    EXPECT_EQ(c.tick(1000), hlc_pack(1000, 0));
    EXPECT_EQ(c.tick(1005), hlc_pack(1005, 0));
}

TEST(Hlc, StaysMonotonicWhenWallClockStepsBack) {
    HybridClock c;
    uint64_t prev = c.tick(5000);
    for (uint64_t wall : {4000, 3000, 5000, 4999, 1}) {
        uint64_t next = c.tick(wall);
        EXPECT_GT(next, prev) << "wall " << wall;
        EXPECT_EQ(hlc_millis(next), 5000u);
        prev = next;
    }
    EXPECT_EQ(hlc_counter(prev), 5);
    EXPECT_EQ(c.tick(6000), hlc_pack(6000, 0));  // wall clock catches up: counter resets
}

TEST(Hlc, CounterOverflowBorrowsTheNextMillisecond) {
    HybridClock c;
    c.observe(hlc_pack(100, 0xFFFE));
    uint64_t a = c.tick(100);
    EXPECT_EQ(a, hlc_pack(100, 0xFFFF));
    uint64_t b = c.tick(100);
    EXPECT_GT(b, a);
    EXPECT_EQ(b, hlc_pack(101, 0));
}

TEST(Hlc, ReceiveMovesPastEveryObservedStamp) {
    HybridClock c;
    c.tick(1000);
    uint64_t remote = hlc_pack(2000, 42);
    c.observe(remote);
    uint64_t next = c.tick(1001);  // local wall clock is behind the remote one
    EXPECT_GT(next, remote);
    c.observe(hlc_pack(10, 0));  // an old stamp never moves the clock back
    EXPECT_GT(c.tick(0), next);
}

TEST(Hlc, MonotonicAcrossRandomTicksAndReceives) {
    HybridClock c;
    uint64_t seed = 12345, prev = 0, maxSeen = 0;
    auto rnd = [&] { return seed = seed * 6364136223846793005ULL + 1442695040888963407ULL; };
    for (int i = 0; i < 100000; ++i) {
        uint64_t wall = 1'000'000 + (rnd() >> 40) % 5000;  // jittery wall clock, often backwards
        if (rnd() % 4 == 0) {
            uint64_t remote = hlc_pack(1'000'000 + (rnd() >> 40) % 6000, static_cast<uint16_t>(rnd()));
            c.observe(remote);
            maxSeen = std::max(maxSeen, remote);
        } else {
            uint64_t t = c.tick(wall);
            ASSERT_GT(t, prev);
            ASSERT_GT(t, maxSeen);
            prev = t;
        }
    }
}

TEST(Hlc, DriftGuardRefusesStampsFarAheadAndNamesTheNode) {
    HybridClock c;
    NodeId n = NodeId::parse("11111111-2222-4333-8444-555555555555");
    const uint64_t now = 1'800'000'000'000ULL;
    EXPECT_EQ(c.max_drift_ms(), 300000u);
    EXPECT_NO_THROW(c.check_drift(hlc_pack(now + 299'000, 0), now, n));
    try {
        c.check_drift(hlc_pack(now + 301'000, 0), now, n);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("11111111-2222-4333-8444-555555555555"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("301 s ahead"), std::string::npos) << e.what();
    }
    c.set_max_drift_ms(1000);
    EXPECT_THROW(c.check_drift(hlc_pack(now + 2000, 0), now, n), Error);
}

TEST(NodeIdTest, RandomIsVersion4AndRoundTrips) {
    NodeId a = NodeId::random_v4(), b = NodeId::random_v4();
    EXPECT_NE(a, b);
    std::string s = a.str();
    ASSERT_EQ(s.size(), 36u);
    EXPECT_EQ(s[14], '4');
    EXPECT_TRUE(s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
    EXPECT_EQ(NodeId::parse(s), a);
    EXPECT_EQ(NodeId::parse("AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE").str(), "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    EXPECT_THROW(NodeId::parse("not-a-uuid"), Error);
    EXPECT_THROW(NodeId::parse("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeeZ"), Error);
}
