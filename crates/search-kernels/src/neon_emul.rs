//! A portable model of the aarch64 NEON intrinsics the NEON variants use, with their
//! signatures and lane semantics (integer arithmetic wraps; `vfmaq_f32` is fused; `vaddvq_f32`
//! adds pairwise like `faddp`), so that tests on other targets build and check those variants.
#![allow(non_camel_case_types)]

/// Four f32 lanes.
#[derive(Clone, Copy, Debug)]
pub struct float32x4_t([f32; 4]);
/// Sixteen i8 lanes.
#[derive(Clone, Copy, Debug)]
pub struct int8x16_t([i8; 16]);
/// Eight i8 lanes.
#[derive(Clone, Copy, Debug)]
pub struct int8x8_t([i8; 8]);
/// Eight i16 lanes.
#[derive(Clone, Copy, Debug)]
pub struct int16x8_t([i16; 8]);
/// Four i16 lanes.
#[derive(Clone, Copy, Debug)]
pub struct int16x4_t([i16; 4]);
/// Four i32 lanes.
#[derive(Clone, Copy, Debug)]
pub struct int32x4_t([i32; 4]);

/// # Safety
/// `ptr` is valid for reading `N` values.
unsafe fn load<T: Copy, const N: usize>(ptr: *const T) -> [T; N] {
    // SAFETY: the caller's.
    std::array::from_fn(|i| unsafe { *ptr.add(i) })
}

pub fn vdupq_n_f32(value: f32) -> float32x4_t {
    float32x4_t([value; 4])
}

pub fn vdupq_n_s32(value: i32) -> int32x4_t {
    int32x4_t([value; 4])
}

/// # Safety
/// `ptr` is valid for reading 4 floats.
pub unsafe fn vld1q_f32(ptr: *const f32) -> float32x4_t {
    // SAFETY: the caller's.
    float32x4_t(unsafe { load(ptr) })
}

/// # Safety
/// `ptr` is valid for reading 16 bytes.
pub unsafe fn vld1q_s8(ptr: *const i8) -> int8x16_t {
    // SAFETY: the caller's.
    int8x16_t(unsafe { load(ptr) })
}

/// # Safety
/// `ptr` is valid for reading 8 i16.
pub unsafe fn vld1q_s16(ptr: *const i16) -> int16x8_t {
    // SAFETY: the caller's.
    int16x8_t(unsafe { load(ptr) })
}

pub fn vfmaq_f32(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
    float32x4_t(std::array::from_fn(|i| b.0[i].mul_add(c.0[i], a.0[i])))
}

pub fn vaddq_f32(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    float32x4_t(std::array::from_fn(|i| a.0[i] + b.0[i]))
}

pub fn vsubq_f32(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    float32x4_t(std::array::from_fn(|i| a.0[i] - b.0[i]))
}

pub fn vaddvq_f32(a: float32x4_t) -> f32 {
    let [x, y, z, w] = a.0;
    (x + y) + (z + w)
}

pub fn vget_low_s8(a: int8x16_t) -> int8x8_t {
    int8x8_t(std::array::from_fn(|i| a.0[i]))
}

pub fn vmovl_s8(a: int8x8_t) -> int16x8_t {
    int16x8_t(a.0.map(i16::from))
}

pub fn vmovl_high_s8(a: int8x16_t) -> int16x8_t {
    int16x8_t(std::array::from_fn(|i| i16::from(a.0[8 + i])))
}

pub fn vget_low_s16(a: int16x8_t) -> int16x4_t {
    int16x4_t(std::array::from_fn(|i| a.0[i]))
}

pub fn vmlal_s16(a: int32x4_t, b: int16x4_t, c: int16x4_t) -> int32x4_t {
    int32x4_t(std::array::from_fn(|i| {
        a.0[i].wrapping_add(i32::from(b.0[i]) * i32::from(c.0[i]))
    }))
}

pub fn vmlal_high_s16(a: int32x4_t, b: int16x8_t, c: int16x8_t) -> int32x4_t {
    int32x4_t(std::array::from_fn(|i| {
        a.0[i].wrapping_add(i32::from(b.0[4 + i]) * i32::from(c.0[4 + i]))
    }))
}

pub fn vmull_s8(a: int8x8_t, b: int8x8_t) -> int16x8_t {
    int16x8_t(std::array::from_fn(|i| {
        i16::from(a.0[i]) * i16::from(b.0[i])
    }))
}

pub fn vmull_high_s8(a: int8x16_t, b: int8x16_t) -> int16x8_t {
    int16x8_t(std::array::from_fn(|i| {
        i16::from(a.0[8 + i]) * i16::from(b.0[8 + i])
    }))
}

pub fn vpadalq_s16(a: int32x4_t, b: int16x8_t) -> int32x4_t {
    int32x4_t(std::array::from_fn(|i| {
        a.0[i]
            .wrapping_add(i32::from(b.0[2 * i]))
            .wrapping_add(i32::from(b.0[2 * i + 1]))
    }))
}

pub fn vaddq_s32(a: int32x4_t, b: int32x4_t) -> int32x4_t {
    int32x4_t(std::array::from_fn(|i| a.0[i].wrapping_add(b.0[i])))
}

pub fn vaddvq_s32(a: int32x4_t) -> i32 {
    a.0.iter().fold(0i32, |s, &x| s.wrapping_add(x))
}
