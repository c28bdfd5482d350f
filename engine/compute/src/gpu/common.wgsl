// Shared by every kernel (prepended to its source). Binding 0 holds the kernel's
// parameters as u32 words (f32 parameters are bit-cast). Elementwise kernels run 256
// threads a workgroup on a 2-D grid so that more than 65535 workgroups fit.

@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P[i]);
}

// The linear index of this thread on a 2-D grid of 256-thread workgroups.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid;
}

// -inf and NaN cannot be WGSL constants; mixing in a runtime zero keeps them runtime.
fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u | (P[0] & 0u));
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u | (P[0] & 0u));
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
