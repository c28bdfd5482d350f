// Elementwise binary ops with numpy broadcasting, selected by the OP override.
// P: [n, ndim, shape[8], a_strides[8], b_strides[8]] (stride 0 on broadcast axes).

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

override OP: u32;

fn apply(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        case 3u: { return a / b; }
        // max/min propagate NaN like torch.maximum/minimum.
        case 4u: { return select(select(max(a, b), b, is_nan(b)), a, is_nan(a)); }
        default: { return select(select(min(a, b), b, is_nan(b)), a, is_nan(a)); }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    let ndim = P[1];
    var rest = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = 0u; d < ndim; d++) {
        let ax = ndim - 1u - d;
        let size = P[2u + ax];
        let c = rest % size;
        rest = rest / size;
        ia += c * P[10u + ax];
        ib += c * P[18u + ax];
    }
    Y[i] = apply(A[ia], B[ib]);
}
