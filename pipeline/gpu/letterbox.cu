// Fused letterbox for the GPU preprocess stage: raw uint8 BGR (or gray) frame in device
// memory -> normalised RGB CHW model input (float32 or float16), in one pass.
// It reproduces pipeline/imaging/letterbox.py (the CPU path) within 1/255 per element:
// same geometry (computed once on the host by letterbox_geometry and passed in), OpenCV's
// INTER_LINEAR sampling convention (half-pixel centres, edge clamp), and a rounding to
// an integer level before the 1/255 scale, because the CPU path resizes into a uint8
// image first. One thread writes one output pixel's three channels.
#include <cuda_fp16.h>

__device__ __forceinline__ void source_coord(int d, float scale, int size, int* i0, int* i1, float* frac) {
    // OpenCV INTER_LINEAR: s = (d + 0.5) * scale - 0.5, clamped at both edges.
    float s = (d + 0.5f) * scale - 0.5f;
    int i = (int)floorf(s);
    float f = s - (float)i;
    if (i < 0) { i = 0; f = 0.0f; }
    if (i >= size - 1) { i = size - 1; f = 0.0f; }
    *i0 = i;
    *i1 = min(i + 1, size - 1);
    *frac = f;
}

template <typename T> __device__ __forceinline__ T to_out(float v);
template <> __device__ __forceinline__ float to_out<float>(float v) { return v; }
template <> __device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__device__ __forceinline__ void letterbox(const unsigned char* __restrict__ src, int src_w, int src_h, int channels,
                                          T* __restrict__ dst, int dst_w, int dst_h, int nw, int nh,
                                          int pad_x, int pad_y, float scale_x, float scale_y, float pad_value) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    const int plane = dst_w * dst_h;
    const int o = y * dst_w + x;
    const float k = 1.0f / 255.0f;
    const int rx = x - pad_x, ry = y - pad_y;
    if (rx < 0 || ry < 0 || rx >= nw || ry >= nh) {
        const T v = to_out<T>(pad_value * k);
        dst[o] = v; dst[plane + o] = v; dst[2 * plane + o] = v;
        return;
    }
    int x0, x1, y0, y1;
    float fx, fy;
    source_coord(rx, scale_x, src_w, &x0, &x1, &fx);
    source_coord(ry, scale_y, src_h, &y0, &y1, &fy);
    const unsigned char* r0 = src + (size_t)y0 * src_w * channels;
    const unsigned char* r1 = src + (size_t)y1 * src_w * channels;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        const int sc = channels == 1 ? 0 : 2 - c;  // BGR -> RGB; gray replicated
        const float top = r0[x0 * channels + sc] * (1.0f - fx) + r0[x1 * channels + sc] * fx;
        const float bottom = r1[x0 * channels + sc] * (1.0f - fx) + r1[x1 * channels + sc] * fx;
        const float level = rintf(top * (1.0f - fy) + bottom * fy);
        dst[c * plane + o] = to_out<T>(level * k);
    }
}

extern "C" __global__ void letterbox_f32(const unsigned char* src, int src_w, int src_h, int channels,
                                         float* dst, int dst_w, int dst_h, int nw, int nh, int pad_x, int pad_y,
                                         float scale_x, float scale_y, float pad_value) {
    letterbox<float>(src, src_w, src_h, channels, dst, dst_w, dst_h, nw, nh, pad_x, pad_y, scale_x, scale_y, pad_value);
}

extern "C" __global__ void letterbox_f16(const unsigned char* src, int src_w, int src_h, int channels,
                                         __half* dst, int dst_w, int dst_h, int nw, int nh, int pad_x, int pad_y,
                                         float scale_x, float scale_y, float pad_value) {
    letterbox<__half>(src, src_w, src_h, channels, dst, dst_w, dst_h, nw, nh, pad_x, pad_y, scale_x, scale_y, pad_value);
}
