// Layer norm, RMS norm and gated RMS norm over the last axis: one 256-thread workgroup
// per row of length d, on a 2-D grid. KIND: 0 layer norm, 1 RMS norm, 2 gated RMS norm
// (gate after the norm), 3 gated RMS norm (gate before). W and B are bound even when
// absent (flags in P). P: [rows, d, eps, has_w, has_b].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> B: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

override KIND: u32;

var<workgroup> red: array<f32, 256>;

fn sum_wg(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// The value normalised: x, or x * silu(gate) when the gate comes first.
fn input(i: u32) -> f32 {
    if (KIND == 3u) {
        return X[i] * silu(G[i]);
    }
    return X[i];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    if (row >= P[0]) {
        return;
    }
    let d = P[1];
    let eps = pf(2u);
    let base = row * d;
    var mean = 0.0;
    if (KIND == 0u) {
        var s = 0.0;
        for (var i = lid; i < d; i += 256u) {
            s += X[base + i];
        }
        mean = sum_wg(s, lid) / f32(d);
    }
    var q = 0.0;
    for (var i = lid; i < d; i += 256u) {
        let v = input(base + i) - mean;
        q += v * v;
    }
    let inv = 1.0 / sqrt(sum_wg(q, lid) / f32(d) + eps);
    for (var i = lid; i < d; i += 256u) {
        var y = (input(base + i) - mean) * inv;
        if (P[3] != 0u) {
            y *= W[i];
        }
        if (P[4] != 0u) {
            y += B[i];
        }
        if (KIND == 2u) {
            y *= silu(G[base + i]);
        }
        Y[base + i] = y;
    }
}
