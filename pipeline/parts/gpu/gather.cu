// Gathers up to GATHER_MAX device slots into consecutive rows of one batch buffer, in
// one launch: blockIdx.y picks the slot, the x blocks stride over its 16-byte words.
// Compiled by pipeline/parts/gpu/slot_gather.py (pycuda SourceModule, no_extern_c).

#define GATHER_MAX 16

struct Sources {
    const uint4* slot[GATHER_MAX];  // the slots' device pointers, rows 0..gridDim.y-1
};

extern "C" __global__ void gather_slots(uint4* __restrict__ batch, unsigned long long words, Sources sources)
{
    const uint4* __restrict__ src = sources.slot[blockIdx.y];
    uint4* __restrict__ dst = batch + blockIdx.y * words;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < words;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}
