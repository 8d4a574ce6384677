// A growable array of plain-old-data, backed by malloc/realloc.
//
// Why not std::vector: when a vector grows it allocates a new block and copies, so for a
// moment the old and the new block are both resident (peak memory ~2x). glibc's realloc of a
// large block remaps pages instead of copying, so the arena's peak stays close to its size.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

namespace arenagrad {

template <typename T>
class PodArray {
    static_assert(std::is_trivially_copyable<T>::value, "PodArray holds plain data only");

public:
    PodArray() = default;
    PodArray(const PodArray&) = delete;
    PodArray& operator=(const PodArray&) = delete;
    ~PodArray() { std::free(data_); }

    std::size_t size() const { return size_; }
    std::size_t capacity() const { return capacity_; }
    T* data() { return data_; }
    const T* data() const { return data_; }
    T& operator[](std::size_t i) { return data_[i]; }
    const T& operator[](std::size_t i) const { return data_[i]; }

    // Grow capacity to at least n elements (throws std::bad_alloc, leaving the array intact).
    void reserve(std::size_t n) {
        if (n <= capacity_) return;
        if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
        void* grown = std::realloc(data_, n * sizeof(T));
        if (grown == nullptr) throw std::bad_alloc();
        data_ = static_cast<T*>(grown);
        capacity_ = n;
    }

    // Callers reserve first (the arena checks one capacity for all its arrays).
    void push_back_unchecked(const T& value) { data_[size_++] = value; }

    // Shrinking never frees; growing leaves new elements uninitialised unless filled.
    void resize(std::size_t n) {
        reserve(n);
        size_ = n;
    }
    void assign(std::size_t n, const T& value) {
        resize(n);
        std::fill_n(data_, n, value);  // a memset for byte-sized T
    }
    void clear() { size_ = 0; }
    void truncate(std::size_t n) {  // n <= size(): drop the tail, keep the memory
        size_ = n;
    }

    // Lower the capacity to n (>= size()), giving the rest back.
    void shrink_to(std::size_t n) {
        if (n >= capacity_ || n < size_ || n == 0) return;
        void* smaller = std::realloc(data_, n * sizeof(T));
        if (smaller != nullptr) {
            data_ = static_cast<T*>(smaller);
            capacity_ = n;
        }
    }

    bool sparse() const { return capacity_ > kShrinkAbove && size_ < capacity_ / 4; }

    // Give memory back when the array has shrunk to well under its capacity.
    void shrink_if_sparse() {
        if (sparse()) {
            std::size_t n = size_ < 64 ? 64 : size_ * 2;
            void* smaller = std::realloc(data_, n * sizeof(T));
            if (smaller != nullptr) {
                data_ = static_cast<T*>(smaller);
                capacity_ = n;
            }
        }
    }

private:
    static constexpr std::size_t kShrinkAbove = 4096;

    T* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

}  // namespace arenagrad
