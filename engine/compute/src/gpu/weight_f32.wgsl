// The weight operand W (binding 2) of the kernels that read weights (matmul's B,
// gather's table), stored as f32s.

@group(0) @binding(2) var<storage, read> W: array<f32>;

fn load_w(i: u32) -> f32 {
    return W[i];
}
