// Rotary position embedding on x [..., T, dh] with host-computed cos/sin tables
// [T, half] (correctly rounded, as on the CPU). P: [n, T, dh, half, interleaved].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> COS: array<f32>;
@group(0) @binding(3) var<storage, read> SIN: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    let dh = P[2];
    let half = P[3];
    let c = i % dh;
    let base = i - c;
    let t = (i / dh) % P[1];
    if (c >= 2u * half) {
        Y[i] = X[i];
        return;
    }
    var j: u32;
    var i1: u32;
    var i2: u32;
    var first: bool;
    if (P[4] != 0u) {
        j = c / 2u;
        i1 = base + 2u * j;
        i2 = i1 + 1u;
        first = (c % 2u) == 0u;
    } else {
        j = c % half;
        i1 = base + j;
        i2 = i1 + half;
        first = c < half;
    }
    let co = COS[t * half + j];
    let si = SIN[t * half + j];
    let x1 = X[i1];
    let x2 = X[i2];
    Y[i] = select(x2 * co + x1 * si, x1 * co - x2 * si, first);
}
