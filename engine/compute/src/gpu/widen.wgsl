// Half-precision weights widened to f32, for an op without a half-reading kernel.
// P: [n].

@group(0) @binding(1) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    Y[i] = load_w(i);
}
