// y of the SSD scan by its recurrent form: one thread per (head, p) walks time, keeping
// its state row S[h, p, :] in the scratch buffer S (laid out [N, H * P] so that
// neighbouring threads touch neighbouring words) and reading out y_t = S_t C_t.
// Products of the decays only, so a_t = 0 is an exact memoryless step; the result equals
// the chunked form to float rounding. x [T, H, P], a [T, H], B and C [T, G, N],
// h0 [H, P, N] (x bound in its place when absent). Out y [T, H, P].
// P: [n = H * P, H, P, N, G, T, has_h0].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read> C: array<f32>;
@group(0) @binding(5) var<storage, read> H0: array<f32>;
@group(0) @binding(6) var<storage, read_write> S: array<f32>;
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;

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
    let steps = P[5];
    let p = i % pd;
    let h = i / pd;
    let g = h / (heads / groups);
    for (var e = 0u; e < ns; e++) {
        var s0 = 0.0;
        if (P[6] != 0u) {
            s0 = H0[i * ns + e];
        }
        S[e * n + i] = s0;
    }
    for (var t = 0u; t < steps; t++) {
        let a = A[t * heads + h];
        let xv = X[(t * heads + h) * pd + p];
        let bc = (t * groups + g) * ns;
        var y = 0.0;
        for (var e = 0u; e < ns; e++) {
            let s = a * S[e * n + i] + xv * B[bc + e];
            S[e * n + i] = s;
            y += s * C[bc + e];
        }
        Y[(t * heads + h) * pd + p] = y;
    }
}
