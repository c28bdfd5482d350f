// Gather along an axis, behind embedding and index_select: viewing the input as
// [outer, len_in, inner], out[o, i, j] = x[o, IDX[i], j]. P: [n, len_out, len_in, inner].
// x is the weight operand W (binding 2, f32 or packed halves: weight_f32.wgsl /
// weight_f16.wgsl).

@group(0) @binding(1) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    let inner = P[3];
    let j = i % inner;
    let r = i / inner;
    let k = r % P[1];
    let o = r / P[1];
    Y[i] = load_w((o * P[2] + IDX[k]) * inner + j);
}
