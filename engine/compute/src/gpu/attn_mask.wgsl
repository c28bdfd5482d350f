// Scales raw attention scores S [H, Tq, Tk] and sets invisible keys to -inf (see
// `AttnMask`). KEEP holds key_keep as u32 (all ones when absent).
// P: [n, Tq, Tk, scale, causal, q_offset, has_window, window].

@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read> KEEP: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wg, nwg, lid);
    if (idx >= P[0]) {
        return;
    }
    let tk = P[2];
    let j = idx % tk;
    let i = (idx / tk) % P[1];
    let qpos = P[5] + i;
    var visible = KEEP[j] != 0u;
    if (P[4] != 0u && j > qpos) {
        visible = false;
    }
    if (P[6] != 0u && j + P[7] <= qpos) {
        visible = false;
    }
    Y[idx] = select(neg_inf(), S[idx] * pf(3u), visible);
}
