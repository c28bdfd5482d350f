// Strided copy, the kernel behind permute, slice and concat: element i of a box of
// `shape` goes from src_off + sum(c * src_strides) to dst_off + sum(c * dst_strides).
// P: [n, ndim, shape[8], src_strides[8], dst_strides[8], src_off, dst_off].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    let ndim = P[1];
    var rest = i;
    var src = P[26];
    var dst = P[27];
    for (var d = 0u; d < ndim; d++) {
        let ax = ndim - 1u - d;
        let size = P[2u + ax];
        let c = rest % size;
        rest = rest / size;
        src += c * P[10u + ax];
        dst += c * P[18u + ax];
    }
    Y[dst] = X[src];
}
