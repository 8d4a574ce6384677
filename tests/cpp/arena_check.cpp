// A Python-free check of the arena, for .ci/sanitize.sh: built with AddressSanitizer,
// UndefinedBehaviorSanitizer and LeakSanitizer (which cannot run usefully inside CPython,
// whose own allocations at exit drown any report). It drives every arena path (ops,
// backward, release/truncation, compaction, the node limit) and destroys the arenas, so any
// leaked, overrun or misused buffer is reported. Exits non-zero on a failed check.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "arena.hpp"

using namespace arenagrad;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "arena_check: FAILED: %s\n", what);
        ++failures;
    }
}

// Stand-ins for Python handles: each owner remembers its node id, as a Value does.
struct Handle {
    NodeId id;
};

void relocate(void* owner, NodeId new_id) { static_cast<Handle*>(owner)->id = new_id; }

Handle* own(Arena& a, NodeId id) {
    Handle* h = new Handle{id};
    a.adopt(id, h);
    return h;
}

void drop(Arena& a, Handle* h) {
    a.release(h->id);
    delete h;
}

// Ops, gradients and truncation on a small graph with known answers.
void small_graph() {
    Arena a;
    Handle* x = own(a, a.leaf(3.0));
    Handle* y = own(a, a.leaf(-2.0));
    NodeId prod = a.binary(Op::Mul, x->id, y->id);         // -6
    NodeId sq = a.pow_const(prod, 2.0, true);               // 36
    NodeId ws[2] = {x->id, y->id}, xs[2] = {y->id, x->id};
    NodeId lin = a.linear(sq, ws, xs, 2);                   // 36 + 3*-2 + -2*3 = 24
    NodeId parts[3] = {lin, a.unary(Op::Tanh, x->id), a.unary(Op::Log, y->id)};
    Handle* out = own(a, a.sum(parts, 3));
    check(a.data[lin] == 24.0, "linear forward");
    check(std::isnan(a.data[parts[2]]), "log(-2) is nan");
    a.backward(out->id);
    // d/dx: sq' * y = 2*prod*y = 24, linear: 2*y = -4, tanh: 1 - tanh(3)^2
    // d/dy: 2*prod*x = -36, linear: 2*x = 6, log: 1/y = -0.5
    const double t = std::tanh(3.0);
    check(std::fabs(a.grad[x->id] - (24.0 - 4.0 + (1.0 - t * t))) < 1e-12, "grad x");
    check(std::fabs(a.grad[y->id] - (-36.0 + 6.0 - 0.5)) < 1e-12, "grad y");
    drop(a, out);  // the top dies: truncate down to y
    check(a.size() == 2 && a.nary.size() == 0, "truncation drops the dead top and its operands");
    drop(a, x);    // x is under y: stays until y dies
    check(a.size() == 2, "a dead node under a live one stays");
    drop(a, y);
    check(a.size() == 0 && a.live_handles() == 0, "empty at the end");
}

// Many interleaved long-lived and temporary nodes, compacted repeatedly.
void compaction() {
    Arena a;
    std::vector<Handle*> live;
    std::vector<double> expect;
    unsigned seed = 12345;
    for (int step = 0; step < 200000; ++step) {
        seed = seed * 1103515245u + 12345u;
        NodeId v = a.leaf(double(step));
        if (!live.empty()) v = a.binary(Op::Add, v, live[seed % live.size()]->id);
        if (seed % 7 == 0) {
            live.push_back(own(a, v));
            expect.push_back(a.data[v]);
        } else {
            a.truncate_dead_top();  // a temporary dies at once
        }
        if (seed % 1000 == 0) a.maybe_compact(relocate);
        if (seed % 4099 == 0 && !live.empty()) {  // drop a random long-lived one
            const std::size_t k = seed % live.size();
            drop(a, live[k]);
            live.erase(live.begin() + long(k));
            expect.erase(expect.begin() + long(k));
        }
    }
    a.compact(relocate);
    check(a.compactions() > 0, "compaction ran");
    bool same = true;
    for (std::size_t k = 0; k < live.size(); ++k) same = same && a.data[live[k]->id] == expect[k];
    check(same, "compaction keeps every live node's value");
    if (!live.empty()) a.backward(live.back()->id);
    while (!live.empty()) {
        drop(a, live.back());
        live.pop_back();
    }
    check(a.size() == 0 && a.live_handles() == 0, "empty after dropping everything");
}

// Past the node limit: ArenaFull, and the arena stays usable.
void node_limit() {
    Arena a;
    a.set_node_limit(10);
    Handle* first = own(a, a.leaf(1.0));
    bool threw = false;
    try {
        for (int i = 0; i < 20; ++i) a.leaf(2.0);
    } catch (const ArenaFull&) {
        threw = true;
    }
    check(threw, "pushing past the node limit throws ArenaFull");
    check(a.size() == 10, "the arena stops exactly at the limit");
    a.truncate_dead_top();
    check(a.size() == 1, "unowned nodes are dropped after the failure");
    NodeId many[12] = {};
    threw = false;
    try {
        a.sum(many, 12);  // operand ids are 0, pushing one node is fine...
        for (int i = 0; i < 20; ++i) a.sum(many, 12);  // ...until the limit
    } catch (const ArenaFull&) {
        threw = true;
    }
    check(threw, "n-ary nodes respect the limit too");
    a.truncate_dead_top();
    check(a.size() == 1 && a.nary.size() == 0, "the n-ary side table is rolled back");
    a.set_node_limit(kMaxNodes);
    Handle* sum = own(a, a.binary(Op::Add, first->id, a.leaf(1.0)));
    check(a.data[sum->id] == 2.0, "the arena works after hitting the limit");
    drop(a, sum);
    drop(a, first);
}

}  // namespace

int main() {
    small_graph();
    compaction();
    node_limit();
    if (failures == 0) std::puts("arena_check: all checks passed");
    return failures == 0 ? 0 : 1;
}
