// The SSM recurrence S_t = a_t S_{t-1} + x_t B_tᵀ, one thread per state entry (h, p, n),
// writing S after each requested position. x [T, H, P], decay a [T, H], B [T, G, N],
// h0 [H, P, N] (x bound in its place when absent). ORDER lists the output slots per
// time step: slots ORDER[last + 1 + j] for j in ORDER[t]..ORDER[t + 1]. Out [K, H, P, N].
// P: [n = H * P * N, H, P, N, G, last (steps to run), has_h0].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read> H0: array<f32>;
@group(0) @binding(5) var<storage, read> ORDER: array<u32>;
@group(0) @binding(6) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    let n = P[0];
    if (i >= n) {
        return;
    }
    let heads = P[1];
    let pd = P[2];
    let ns = P[3];
    let groups = P[4];
    let last = P[5];
    let e = i % ns;
    let row = i / ns;
    let p = row % pd;
    let h = row / pd;
    let g = h / (heads / groups);
    var s = 0.0;
    if (P[6] != 0u) {
        s = H0[i];
    }
    for (var t = 0u; t < last; t++) {
        s = A[t * heads + h] * s + X[(t * heads + h) * pd + p] * B[(t * groups + g) * ns + e];
        for (var j = ORDER[t]; j < ORDER[t + 1u]; j++) {
            Y[ORDER[last + 1u + j] * n + i] = s;
        }
    }
}
