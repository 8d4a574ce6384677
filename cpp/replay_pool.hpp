// The threads that run a CPU replay's tiles, and the one rule that makes them robust on a busy
// machine: the calling thread never waits for a helper that has not started.
//
// An OpenMP parallel loop ends in a barrier that every thread of the team must reach, so on a
// machine whose other cores are busy, a replay of 100 us waited for a helper thread until the
// OS scheduled it: several milliseconds (2 threads ran 2-20x slower than 1). Here the caller
// takes tiles itself from a shared counter as soon as the job is posted; helpers that wake in
// time take tiles too, and the caller waits only for the tiles a helper has actually taken.
// A helper that wakes after every tile is taken goes back to sleep without touching the job.
//
// Which thread runs a tile never changes the results (replay_cpu.hpp sums tiles in tile
// order). The pool is process-wide and never destroyed (its threads may outlive the
// interpreter's teardown, like the arena); a forked child gets a new one, since the parent's
// threads were not copied (config.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(ARENAGRAD_WITH_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "config.hpp"

namespace arenagrad {

class TilePool {
public:
    // Runs task(ctx, tile, worker) for every tile in [0, tiles), on this thread (worker 0) and
    // up to threads - 1 helpers (workers 1, 2, ...); returns when every tile has run.
    // A task must not throw: helpers run it on their own threads, with a ctx that lives on
    // the caller's stack.
    using Task = void (*)(void* ctx, std::size_t tile, int worker) noexcept;

    static TilePool& instance() {
        // A child forked from a process with a pool gets its own (the parent's threads, and
        // the state of its mutex at the fork, do not carry over); the old one is left alone.
        static std::atomic<TilePool*> pool{nullptr};
        static std::atomic<unsigned> generation{0};
        TilePool* p = pool.load(std::memory_order_acquire);
        if (p == nullptr || generation.load(std::memory_order_acquire) != fork_generation()) {
            p = new TilePool();  // never deleted (see above)
            generation.store(fork_generation(), std::memory_order_release);
            pool.store(p, std::memory_order_release);
        }
        return *p;
    }

    // A second caller while a job runs (another Python thread's replay) runs its tiles alone.
    void run(std::size_t tiles, int threads, Task task, void* ctx) {
        std::unique_lock<std::mutex> running(running_, std::try_to_lock);
        // (A ticket holds the tile number in 32 bits.)
        if (threads <= 1 || tiles <= 1 || tiles >= (std::size_t(1) << 32) || !running.owns_lock()) {
            for (std::size_t t = 0; t < tiles; ++t) task(ctx, t, 0);
            return;
        }
        const Job job{task, ctx, tiles, threads};
        std::uint64_t epoch;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            start_helpers(threads - 1);
            epoch = ++epoch_;
            job_ = job;
            done_.store(0, std::memory_order_relaxed);
            ticket_.store(epoch << 32, std::memory_order_release);
        }
        wake_.notify_all();
        const std::size_t mine = take_tiles(epoch, job, 0);
        // Only tiles that helpers took are left: they are running now.
        while (done_.load(std::memory_order_acquire) + mine < tiles) std::this_thread::yield();
    }

private:
    struct Job {
        Task task = nullptr;
        void* ctx = nullptr;
        std::size_t tiles = 0;
        int threads = 0;
    };

    std::mutex running_;  // held by the caller whose job the helpers serve
    std::mutex mutex_;
    std::condition_variable wake_;
    std::uint64_t epoch_ = 0;  // jobs posted (under mutex_)
    Job job_;                  // the latest job (under mutex_)
    int helpers_ = 0;          // helper threads started (under mutex_)
    // The job's epoch (high 32 bits) and its next tile (low 32 bits): a tile is taken by one
    // compare-exchange, which fails for a helper that still holds an older epoch.
    std::atomic<std::uint64_t> ticket_{0};
    std::atomic<std::size_t> done_{0};  // tiles the helpers finished in the current job

    TilePool() = default;

    // Up to n helpers (under mutex_). Without them (no threads to be had), the caller runs
    // every tile itself.
    void start_helpers(int n) {
        const int place = bound_place();
        try {
            while (helpers_ < n) {
                std::thread helper(&TilePool::helper_loop, this, helpers_ + 1);
                ++helpers_;
                bind_to_place(helper, helpers_, place);
                helper.detach();
            }
        } catch (const std::system_error&) {
        }
    }

    // With OMP_PROC_BIND, OpenMP binds the calling (initial) thread to a place, and a thread
    // it starts inherits that binding: every helper would share the caller's core. So helper
    // k is bound as OpenMP binds its thread k, to the k-th place after the caller's.
    // bound_place(): the caller's place, or -1 when it is not bound (helpers then run anywhere).
    static int bound_place() {
#if defined(ARENAGRAD_WITH_OPENMP) && defined(__linux__)
        if (omp_get_proc_bind() != omp_proc_bind_false && omp_get_num_places() > 1) return omp_get_place_num();
#endif
        return -1;
    }
    static void bind_to_place([[maybe_unused]] std::thread& helper, [[maybe_unused]] int worker,
                              [[maybe_unused]] int caller_place) {
#if defined(ARENAGRAD_WITH_OPENMP) && defined(__linux__)
        if (caller_place < 0) return;
        const int place = (caller_place + worker) % omp_get_num_places();
        std::vector<int> ids(std::size_t(omp_get_place_num_procs(place)));
        omp_get_place_proc_ids(place, ids.data());
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int id : ids) CPU_SET(id, &set);
        pthread_setaffinity_np(helper.native_handle(), sizeof set, &set);  // if refused, it runs anywhere
#endif
    }

    // Runs tiles of job `epoch` while any are left; returns how many.
    std::size_t take_tiles(std::uint64_t epoch, const Job& job, int worker) {
        std::size_t count = 0;
        std::uint64_t t = ticket_.load(std::memory_order_acquire);
        while ((t >> 32) == (epoch & 0xFFFFFFFFu) && (t & 0xFFFFFFFFu) < job.tiles) {
            if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
            job.task(job.ctx, std::size_t(t & 0xFFFFFFFFu), worker);
            ++count;
            t = ticket_.load(std::memory_order_acquire);
        }
        return count;
    }

    void helper_loop(int worker) {
        std::uint64_t seen = 0;
        for (;;) {
            Job job;
            std::uint64_t epoch;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return epoch_ != seen; });
                seen = epoch = epoch_;
                job = job_;
            }
            if (worker >= job.threads) continue;  // this job wants fewer threads
            // While this helper holds a tile of job `epoch`, that job cannot finish, so `job`
            // (copied under the lock) is still the one the tiles belong to.
            const std::size_t count = take_tiles(epoch, job, worker);
            if (count > 0) done_.fetch_add(count, std::memory_order_release);
        }
    }
};

}  // namespace arenagrad
