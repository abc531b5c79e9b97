// Fused letterbox for the GPU preprocess stage: raw uint8 BGR, gray (Mono8) or Bayer
// mosaic frame in device memory -> normalised RGB CHW model input (float32 or float16),
// in one pass. A Mono8 frame is replicated to three channels; a Bayer frame is
// demosaiced at each source pixel the resampling reads (bilinear, exactly OpenCV's
// COLOR_Bayer*2BGR), so a Bayer camera's frame crosses the bus at one byte a pixel.
// It reproduces pipeline/parts/preprocessing/letterbox.py (the CPU path) within 1/255 per element:
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

// Bilinear demosaic at source pixel (x, y) into rgb[3], with OpenCV's integer rounding
// ((a+b+1)>>1, (a+b+c+d+2)>>2) and its border rule (the outermost rows and columns
// repeat their inner neighbours): the CPU path's cv2.cvtColor gives the same levels.
// `red` is where red sits in the 2x2 tile: x + 2*y (BayerRG8 0, GR 1, GB 2, BG 3).
// Needs a frame of at least 3x3 (the host checks).
__device__ __forceinline__ void demosaic(const unsigned char* __restrict__ src, int w, int h, int red,
                                         int x, int y, int* rgb) {
    x = min(max(x, 1), w - 2);
    y = min(max(y, 1), h - 2);
    const int dx = (x ^ red) & 1, dy = (y ^ (red >> 1)) & 1;
    const unsigned char* p = src + (size_t)y * w + x;
    const int left = p[-1], right = p[1], up = p[-w], down = p[w];
    if (dx == dy) {  // a red (0, 0) or blue (1, 1) site: green on the cross, the other on the diagonals
        const int self = dx == 0 ? 0 : 2;
        rgb[self] = p[0];
        rgb[1] = (left + right + up + down + 2) >> 2;
        rgb[2 - self] = (p[-w - 1] + p[-w + 1] + p[w - 1] + p[w + 1] + 2) >> 2;
    } else {  // a green site: in red's rows the horizontal neighbours are red, else blue
        const int across = dy == 0 ? 0 : 2;
        rgb[1] = p[0];
        rgb[across] = (left + right + 1) >> 1;
        rgb[2 - across] = (up + down + 1) >> 1;
    }
}

template <typename T> __device__ __forceinline__ T to_out(float v);
template <> __device__ __forceinline__ float to_out<float>(float v) { return v; }
template <> __device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float resample(float a, float b, float c, float d, float fx, float fy) {
    const float top = a * (1.0f - fx) + b * fx;
    const float bottom = c * (1.0f - fx) + d * fx;
    return rintf(top * (1.0f - fy) + bottom * fy);
}

template <typename T>
__device__ __forceinline__ void letterbox(const unsigned char* __restrict__ src, int src_w, int src_h, int channels,
                                          int bayer, T* __restrict__ dst, int dst_w, int dst_h, int nw, int nh,
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
    if (bayer >= 0) {  // the four taps demosaiced first, then resampled like a BGR frame
        int p00[3], p01[3], p10[3], p11[3];
        demosaic(src, src_w, src_h, bayer, x0, y0, p00);
        demosaic(src, src_w, src_h, bayer, x1, y0, p01);
        demosaic(src, src_w, src_h, bayer, x0, y1, p10);
        demosaic(src, src_w, src_h, bayer, x1, y1, p11);
        #pragma unroll
        for (int c = 0; c < 3; ++c) {
            const float level = resample(p00[c], p01[c], p10[c], p11[c], fx, fy);
            dst[c * plane + o] = to_out<T>(level * k);
        }
        return;
    }
    const unsigned char* r0 = src + (size_t)y0 * src_w * channels;
    const unsigned char* r1 = src + (size_t)y1 * src_w * channels;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        const int sc = channels == 1 ? 0 : 2 - c;  // BGR -> RGB; gray replicated
        const float level = resample(r0[x0 * channels + sc], r0[x1 * channels + sc],
                                     r1[x0 * channels + sc], r1[x1 * channels + sc], fx, fy);
        dst[c * plane + o] = to_out<T>(level * k);
    }
}

extern "C" __global__ void letterbox_f32(const unsigned char* src, int src_w, int src_h, int channels, int bayer,
                                         float* dst, int dst_w, int dst_h, int nw, int nh, int pad_x, int pad_y,
                                         float scale_x, float scale_y, float pad_value) {
    letterbox<float>(src, src_w, src_h, channels, bayer, dst, dst_w, dst_h, nw, nh, pad_x, pad_y, scale_x, scale_y, pad_value);
}

extern "C" __global__ void letterbox_f16(const unsigned char* src, int src_w, int src_h, int channels, int bayer,
                                         __half* dst, int dst_w, int dst_h, int nw, int nh, int pad_x, int pad_y,
                                         float scale_x, float scale_y, float pad_value) {
    letterbox<__half>(src, src_w, src_h, channels, bayer, dst, dst_w, dst_h, nw, nh, pad_x, pad_y, scale_x, scale_y, pad_value);
}
