// The weight operand W (binding 2) stored as IEEE halves packed two to a u32 word
// (element 2i in the low half). Core WGSL's unpack2x16float widens them, so this runs
// on every adapter, with or without `shader-f16`; arithmetic stays f32.

@group(0) @binding(2) var<storage, read> W: array<u32>;

fn load_w(i: u32) -> f32 {
    return unpack2x16float(W[i >> 1u])[i & 1u];
}
