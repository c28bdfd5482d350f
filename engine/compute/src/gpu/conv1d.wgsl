// Depthwise causal convolution over time (Mamba2's conv1d), one thread per output:
// y[t, c] = bias[c] + Σ_j w[c, j] · in[t + j, c], where `in` is prefix [K-1, C] (zeros
// when absent) followed by x [T, C]. Absent bias and prefix bind x in their place (flags
// in P). P: [n = T * C, C, K, has_bias, has_prefix].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read> PRE: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= P[0]) {
        return;
    }
    let c = P[1];
    let k = P[2];
    let ch = i % c;
    let t = i / c;
    var acc = 0.0;
    if (P[3] != 0u) {
        acc = BIAS[ch];
    }
    // Row r of the padded input: prefix rows first, then x.
    for (var j = 0u; j < k; j++) {
        let r = t + j;
        var v = 0.0;
        if (r + 1u >= k) {
            v = X[(r + 1u - k) * c + ch];
        } else if (P[4] != 0u) {
            v = PRE[r * c + ch];
        }
        acc += W[ch * k + j] * v;
    }
    Y[i] = acc;
}
