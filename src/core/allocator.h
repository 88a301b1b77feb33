// Caching allocator: 64-byte aligned host blocks, reused by exact (rounded) size so that
// repeated steps of a sampler or trainer stop calling the system allocator.
#pragma once
#include <cstddef>

namespace diffuse {

void* host_alloc(size_t bytes);
void host_free(void* p, size_t bytes);
// Returns cached blocks to the system.
void host_cache_clear();
size_t host_cache_bytes();

}  // namespace diffuse
