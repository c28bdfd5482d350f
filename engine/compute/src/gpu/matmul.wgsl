// Tiled batched matrix product C[b] = op(A[b]) @ op(B[b]) with optional transposes:
// 64x64 output tiles, 16-deep k steps through workgroup memory, 16x16 threads each
// accumulating a 4x4 block. OFF holds each batch's element offsets into A and B (so
// broadcast batches cost nothing). P: [M, N, K, trans_a, trans_b]. B is the weight
// operand W (binding 2, f32 or packed halves: weight_f32.wgsl / weight_f16.wgsl).

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> OFF: array<u32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let M = P[0];
    let N = P[1];
    let K = P[2];
    let ta = P[3] != 0u;
    let tb = P[4] != 0u;
    let aoff = OFF[2u * wg.z];
    let boff = OFF[2u * wg.z + 1u];
    let coff = wg.z * M * N;
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let tid = l.y * 16u + l.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            // Consecutive threads read consecutive addresses in either layout.
            var mm: u32;
            var kk: u32;
            if (ta) {
                kk = e / BM;
                mm = e % BM;
            } else {
                mm = e / BK;
                kk = e % BK;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var va = 0.0;
            if (gm < M && gk < K) {
                va = A[aoff + select(gm * K + gk, gk * M + gm, ta)];
            }
            As[kk * BM + mm] = va;
            var nn: u32;
            if (tb) {
                nn = e / BK;
                kk = e % BK;
            } else {
                kk = e / BN;
                nn = e % BN;
            }
            let gn = col0 + nn;
            let gk2 = k0 + kk;
            var vb = 0.0;
            if (gn < N && gk2 < K) {
                vb = load_w(boff + select(gk2 * N + gn, gn * K + gk2, tb));
            }
            Bs[kk * BN + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = As[kk * BM + l.y + 16u * i];
                b[i] = Bs[kk * BN + l.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + l.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + l.x + 16u * j;
            if (r < M && c < N) {
                C[coff + r * N + c] = acc[i * 4u + j];
            }
        }
    }
}
