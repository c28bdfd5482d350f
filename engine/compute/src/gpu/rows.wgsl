// Row reductions: one 256-thread workgroup per row of a tensor viewed as
// [outer, len, inner] (the row runs along `len` with stride `inner`), on a 2-D grid.
// KIND selects the op (codes in `gpu/mod.rs`): softmax, log-softmax, sum, mean, max,
// min. P: [rows, len, inner].

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

override KIND: u32;

var<workgroup> red: array<f32, 256>;

// Combines the 256 partial values in `red` (sum, or NaN-propagating max/min).
fn combine(a: f32, b: f32, how: u32) -> f32 {
    if (how == 0u) {
        return a + b;
    }
    if (is_nan(a) || is_nan(b)) {
        return nan();
    }
    return select(min(a, b), max(a, b), how == 1u);
}

fn reduce_wg(v: f32, lid: u32, how: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = combine(red[lid], red[lid + s], how);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wg.y * nwg.x + wg.x;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (row >= P[0]) {
        return;
    }
    let len = P[1];
    let inner = P[2];
    let base = (row / inner) * len * inner + row % inner;
    if (KIND <= 1u) {
        // Softmax / log-softmax: max, then sum of exp.
        var m = neg_inf();
        for (var i = lid; i < len; i += 256u) {
            m = max(m, X[base + i * inner]);
        }
        m = reduce_wg(m, lid, 1u);
        var s = 0.0;
        if (m != neg_inf()) {
            for (var i = lid; i < len; i += 256u) {
                s += exp(X[base + i * inner] - m);
            }
        }
        s = reduce_wg(s, lid, 0u);
        let ls = log(s);
        for (var i = lid; i < len; i += 256u) {
            let x = X[base + i * inner];
            var y: f32;
            if (m == neg_inf()) {
                // An all -inf row: softmax 0, log-softmax -inf.
                y = select(0.0, neg_inf(), KIND == 1u);
            } else if (KIND == 1u) {
                y = x - m - ls;
            } else {
                y = exp(x - m) / s;
            }
            Y[base + i * inner] = y;
        }
        return;
    }
    // Reductions: sum, mean, max, min (one output per row).
    let how = select(select(2u, 1u, KIND == 4u), 0u, KIND <= 3u);
    var acc = select(X[base], 0.0, how == 0u || len == 0u);
    for (var i = lid; i < len; i += 256u) {
        acc = combine(acc, X[base + i * inner], how);
    }
    // Threads past the end contribute the identity (first element for max/min).
    acc = reduce_wg(acc, lid, how);
    if (lid == 0u) {
        Y[row] = select(acc, acc / f32(len), KIND == 3u);
    }
}
