//! The CPU backend: multi-threaded kernels over host tensors.
//!
//! Most ops (products, attention, elementwise ops, norms, copies) run from the calling
//! thread on the backend's spinning pool (`spin.rs`): the caller takes part and the
//! helpers spin between ops, so none of the hundreds of ops of a forward or a decoding
//! step waits for a sleeping worker to wake. The rest (reductions and softmax, the SSM's
//! chunked scan and convolution, attention that returns its probabilities), and any op
//! while another caller holds the spinning pool, run in the backend's own rayon pool.
//! Both are bounded by the backend's thread count, so a host can bound how many cores
//! tokit uses; tiny ops run on the calling thread alone.

#[cfg(target_arch = "x86_64")]
mod amx;
mod attention;
mod elementwise;
mod embed;
mod fastmath;
mod gemm;
mod half;
mod layout;
mod matmul;
mod norm;
mod reduce;
mod spin;
mod ssm;

use anyhow::{Context, Result};

#[cfg(feature = "gpu")]
pub(crate) use attention::check as attention_dims;
#[cfg(feature = "gpu")]
pub(crate) use layout::reshape;
#[cfg(feature = "gpu")]
pub(crate) use ssm::{conv_dims, scan_dims};

pub use half::CpuWeights;

use crate::{AttnMask, Backend, BinaryOp, ReduceOp, Tensor, UnaryOp};

/// CPU implementation of [`Backend`].
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    /// Where most ops run: the caller takes part and the helpers spin between ops (see
    /// `spin.rs`).
    near: spin::SpinPool,
    weights: CpuWeights,
}

impl CpuBackend {
    /// A backend with a dedicated pool of `threads` workers (`None` or `Some(0)`: one
    /// per available core).
    ///
    /// # Panics
    /// Only if the operating system refuses to spawn threads; use [`CpuBackend::try_new`]
    /// to get that as an error.
    pub fn new(threads: Option<usize>) -> Self {
        Self::try_new(threads).expect("cpu backend: cannot start the thread pool")
    }

    /// Like [`CpuBackend::new`] but reports thread-spawn failures as errors.
    pub fn try_new(threads: Option<usize>) -> Result<Self> {
        let n = threads
            .filter(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tokit-cpu-{i}"))
            .build()
            .context("cpu backend: cannot start the thread pool")?;
        Ok(CpuBackend {
            pool,
            near: spin::SpinPool::new(n),
            weights: CpuWeights::F32,
        })
    }

    /// Stores model weight matrices in `weights` precision (see `half.rs`: matmul's B
    /// operand and embedding tables; arithmetic stays f32). Anything but
    /// [`CpuWeights::F32`] changes the numbers, so it is opt-in and named in
    /// [`Backend::name`].
    pub fn with_weights(mut self, weights: CpuWeights) -> Self {
        self.weights = weights;
        self
    }

    /// How weight matrices are stored.
    pub fn weights(&self) -> CpuWeights {
        self.weights
    }

    /// The matrix-multiply path this machine runs (`"amx-bf16x6+avx512"`, `"avx512"`,
    /// `"avx2+fma"` or `"portable"`), for benchmark reports.
    pub fn isa() -> &'static str {
        match gemm::detect_isa() {
            gemm::Isa::Avx512 => "avx512",
            gemm::Isa::Amx => "amx-bf16x6+avx512",
            gemm::Isa::Avx2 => "avx2+fma",
            gemm::Isa::Portable => "portable",
        }
    }

    /// `", AMX bf16x6 products"` where large products run on AMX tiles (f32-accurate by
    /// a three-way bf16 split, see `amx.rs`), else empty: for provenance.
    pub fn gemm_note() -> &'static str {
        match gemm::detect_isa() {
            gemm::Isa::Amx => ", AMX bf16x6 products",
            _ => "",
        }
    }

    /// The f32 FMA throughput of this backend's threads right now, in GFLOP/s (a
    /// register-only loop of the GEMM microkernel's shape); `None` where there is no
    /// AVX-512 kernel. For reporting a GEMM's fraction of peak.
    pub fn fma_peak_gflops(&self) -> Option<f64> {
        self.run(gemm::fma_peak_gflops)
    }

    /// Number of worker threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.pool.install(f)
    }

    /// Runs an op from the calling thread on the spinning pool (`spin.rs`), or on the
    /// rayon pool when another caller holds it. Only for ops whose parallel parts go
    /// through `spin::for_each` (which runs on whichever of the two the op landed on).
    /// On a forward of 128 tokens this was 9 % faster than handing each op to rayon.
    fn run_near<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match self.near.enter() {
            Some(_held) => f(),
            None => self.pool.install(f),
        }
    }

    /// Runs an op whose kernel is serial up to [`elementwise::PAR_CHUNK`] elements
    /// (`numel`: the most it reads or writes) on the calling thread when it is that
    /// small: handing a tiny op to the pool and waiting for it costs more than the op
    /// (single-token decoding issues hundreds of them per token). Larger ones go to the
    /// spinning pool.
    fn run_small<T: Send>(&self, numel: usize, f: impl FnOnce() -> T + Send) -> T {
        if numel <= elementwise::PAR_CHUNK {
            f()
        } else {
            self.run_near(f)
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new(None)
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        match self.weights {
            CpuWeights::F32 => "cpu".to_string(),
            w => format!("cpu, {} weights", w.name()),
        }
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let bh = half::half_weights(self.weights, b);
        // A weight matrix used as `x @ W^T` by a GEMM (more rows than the vector path
        // takes) is packed once and kept: its f32 values, or its half copy widened.
        let k = a.shape().last().copied().unwrap_or(0);
        let gemm_rows = a.numel().checked_div(k).unwrap_or(0);
        let bp =
            (b.is_weight() && trans_b && !trans_a && b.ndim() == 2 && gemm_rows > gemm::GEMV_MAX_M)
                .then(|| self.run(|| gemm::packed_weight(b, bh.as_deref())))
                .flatten();
        let product = || matmul::matmul(a, b, trans_a, trans_b, bh.as_deref(), bp.as_deref());
        self.run_near(product)
    }

    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let out = crate::shape::broadcast_shape(a.shape(), b.shape())
            .map_or(usize::MAX, |s| s.iter().product());
        self.run_small(out, || elementwise::binary(op, a, b))
    }

    fn unary(&self, op: UnaryOp, a: &Tensor) -> Result<Tensor> {
        self.run_small(a.numel(), || elementwise::unary(op, a))
    }

    fn affine(&self, a: &Tensor, scale: f32, shift: f32) -> Result<Tensor> {
        self.run_small(a.numel(), || elementwise::affine(a, scale, shift))
    }

    fn softmax(&self, a: &Tensor, axis: isize) -> Result<Tensor> {
        self.run(|| reduce::softmax(a, axis, false))
    }

    fn log_softmax(&self, a: &Tensor, axis: isize) -> Result<Tensor> {
        self.run(|| reduce::softmax(a, axis, true))
    }

    fn reduce(&self, op: ReduceOp, a: &Tensor, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.run(|| reduce::reduce(op, a, axis, keepdim))
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        self.run_small(x.numel(), || norm::layer_norm(x, weight, bias, eps))
    }

    fn rms_norm(&self, x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        self.run_small(x.numel(), || norm::rms_norm(x, weight, eps))
    }

    fn rms_norm_gated(
        &self,
        x: &Tensor,
        gate: &Tensor,
        weight: Option<&Tensor>,
        eps: f32,
        norm_before_gate: bool,
    ) -> Result<Tensor> {
        self.run_small(x.numel(), || {
            norm::rms_norm_gated(x, gate, weight, eps, norm_before_gate)
        })
    }

    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let th = half::half_weights(self.weights, table);
        let d = table.shape().last().copied().unwrap_or(0);
        self.run_small(ids.len().saturating_mul(d), || {
            embed::embedding(table, ids, th.as_deref())
        })
    }

    fn rope(
        &self,
        x: &Tensor,
        positions: &[usize],
        inv_freq: &[f32],
        interleaved: bool,
    ) -> Result<Tensor> {
        self.run_small(x.numel(), || {
            embed::rope(x, positions, inv_freq, interleaved)
        })
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f32,
    ) -> Result<Tensor> {
        let one = || attention::attention(q, k, v, mask, scale, false).map(|(out, _)| out);
        self.run_near(one)
    }

    fn attention_with_probs(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        scale: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.run(|| {
            let (out, probs) = attention::attention(q, k, v, mask, scale, true)?;
            let (scores, pattern) = probs.context("attention: probabilities were not kept")?;
            Ok((out, scores, pattern))
        })
    }

    fn reshape(&self, a: &Tensor, shape: &[isize]) -> Result<Tensor> {
        layout::reshape(a, shape)
    }

    fn permute(&self, a: &Tensor, axes: &[usize]) -> Result<Tensor> {
        self.run_small(a.numel(), || layout::permute(a, axes))
    }

    fn slice(&self, a: &Tensor, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        if a.numel() <= layout::COPY_SERIAL {
            return layout::slice(a, axis, start, end);
        }
        self.run_near(|| layout::slice(a, axis, start, end))
    }

    fn concat(&self, parts: &[&Tensor], axis: isize) -> Result<Tensor> {
        let total: usize = parts.iter().map(|p| p.numel()).sum();
        if total <= layout::COPY_SERIAL {
            return layout::concat(parts, axis);
        }
        self.run_near(|| layout::concat(parts, axis))
    }

    fn index_select(&self, a: &Tensor, axis: isize, indices: &[usize]) -> Result<Tensor> {
        self.run_near(|| layout::index_select(a, axis, indices))
    }

    fn conv1d_causal(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        prefix: Option<&Tensor>,
    ) -> Result<Tensor> {
        if x.shape().first().is_some_and(|&t| t <= ssm::SHORT) {
            return ssm::conv1d_causal(x, weight, bias, prefix);
        }
        self.run(|| ssm::conv1d_causal(x, weight, bias, prefix))
    }

    fn ssd_scan(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        h0: Option<&Tensor>,
        chunk: usize,
    ) -> Result<Tensor> {
        let scan = || ssm::ssd_scan(x, a, b, c, h0, chunk);
        if x.shape().first() == Some(&1) {
            // A decoding step (see `ssm::ssd_step`).
            self.run_near(scan)
        } else {
            self.run(scan)
        }
    }

    fn ssm_states(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        h0: Option<&Tensor>,
        positions: &[usize],
    ) -> Result<Tensor> {
        let states = || ssm::ssm_states(x, a, b, h0, positions);
        if positions.len() == 1 {
            // One snapshot (each decoding step): heads through `spin::for_each` only.
            self.run_near(states)
        } else {
            self.run(states)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode-shaped products streaming weights from memory (copies cycled through, 400 MB
    /// in all, as a model's layers): GB/s of weights read, best of 5.
    #[test]
    #[ignore = "timing only: cargo test --release -p tokit-compute gemv_bandwidth -- --ignored --nocapture"]
    fn gemv_bandwidth() {
        for weights in [CpuWeights::F32, CpuWeights::Bf16, CpuWeights::F16] {
            let be = CpuBackend::new(Some(2)).with_weights(weights);
            let elem = if weights == CpuWeights::F32 { 4 } else { 2 };
            for (n, k) in [
                (49152, 576),
                (1536, 576),
                (576, 1536),
                (576, 576),
                (192, 576),
            ] {
                let copies = (100_000_000 / (n * k)).max(1);
                let ws: Vec<Tensor> = (0..copies)
                    .map(|c| {
                        Tensor::new(vec![n, k], vec![0.01 * c as f32; n * k])
                            .unwrap()
                            .into_weight()
                    })
                    .collect();
                let x = Tensor::new(vec![1, k], vec![1.0; k]).unwrap();
                for (c, w) in ws.iter().enumerate() {
                    // Each output is k copies of the weight value (rounded to bf16 there).
                    let y = be.matmul(&x, w, false, true).unwrap();
                    let want = k as f32 * 0.01 * c as f32;
                    assert!(y
                        .data()
                        .iter()
                        .all(|&v| (v - want).abs() <= 1e-2 * want.abs()));
                }
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    for w in &ws {
                        be.matmul(&x, w, false, true).unwrap();
                    }
                    best = best.min(t.elapsed().as_secs_f64() / copies as f64);
                }
                println!(
                    "{weights:?} [{n}, {k}]: {:.1} us, {:.1} GB/s",
                    best * 1e6,
                    (n * k * elem) as f64 / best / 1e9
                );
            }
        }
    }

    #[test]
    fn backend_is_object_safe_and_dispatches() {
        let be: Box<dyn Backend> = Box::new(CpuBackend::new(Some(2)));
        assert_eq!(be.name(), "cpu");
        let a = Tensor::new(vec![2, 2], vec![1., 2., 3., 4.]).unwrap();
        let i = Tensor::new(vec![2, 2], vec![1., 0., 0., 1.]).unwrap();
        assert_eq!(be.matmul(&a, &i, false, true).unwrap().data(), a.data());
        assert_eq!(
            be.binary(BinaryOp::Add, &a, &a).unwrap().data(),
            &[2., 4., 6., 8.]
        );
        assert_eq!(
            be.unary(UnaryOp::Neg, &a).unwrap().data(),
            &[-1., -2., -3., -4.]
        );
        assert_eq!(be.affine(&a, 2.0, 1.0).unwrap().data(), &[3., 5., 7., 9.]);
        assert_eq!(
            be.reduce(ReduceOp::Sum, &a, -1, false).unwrap().data(),
            &[3., 7.]
        );
        assert_eq!(be.reshape(&a, &[4]).unwrap().shape(), &[4]);
        assert_eq!(be.permute(&a, &[1, 0]).unwrap().data(), &[1., 3., 2., 4.]);
        assert_eq!(be.slice(&a, 0, 1, 2).unwrap().data(), &[3., 4.]);
        assert_eq!(be.concat(&[&a, &a], 0).unwrap().shape(), &[4, 2]);
        assert_eq!(be.index_select(&a, 1, &[1]).unwrap().data(), &[2., 4.]);
        assert_eq!(be.embedding(&a, &[1]).unwrap().data(), &[3., 4.]);
        let q = Tensor::zeros(vec![1, 2, 2]);
        let (out, scores, pattern) = be
            .attention_with_probs(&q, &q, &q, &AttnMask::causal(), 1.0)
            .unwrap();
        assert_eq!(out.shape(), &[1, 2, 2]);
        assert_eq!(scores.data()[1], f32::NEG_INFINITY);
        assert_eq!(pattern.data(), &[1.0, 0.0, 0.5, 0.5]);
        assert_eq!(CpuBackend::new(Some(3)).threads(), 3);
        // Weights are packed once for the GEMM: the very same numbers as packing per call,
        // across depth blocks (k > 256) and column blocks (n > 2048), folded batches too.
        let mut rng = crate::testutil::Rng::new(5);
        for (xs, n, k) in [
            (vec![37, 300], 2100, 300),
            (vec![2, 19, 70], 45, 70),
            (vec![5, 3], 7, 3),
        ] {
            let x = rng.tensor(&xs);
            let w = rng.tensor(&[n, k]);
            let plain = be.matmul(&x, &w, false, true).unwrap();
            let w = w.into_weight();
            for _ in 0..2 {
                let packed = be.matmul(&x, &w, false, true).unwrap();
                assert_eq!(packed.shape(), plain.shape());
                assert!(
                    packed
                        .data()
                        .iter()
                        .zip(plain.data())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{xs:?} x [{n}, {k}]^T"
                );
            }
        }
        // Past the serial size ops go to the pool: same results.
        let n = 3 * elementwise::PAR_CHUNK + 5;
        let big = Tensor::new(vec![n], (0..n).map(|i| i as f32).collect()).unwrap();
        let sum = be.binary(BinaryOp::Add, &big, &big).unwrap();
        assert!(sum
            .data()
            .iter()
            .enumerate()
            .all(|(i, &v)| v == 2.0 * i as f32));
        let tail = be.slice(&big, 0, n - 2, n).unwrap();
        assert_eq!(tail.data(), &[(n - 2) as f32, (n - 1) as f32]);
        assert!(CpuBackend::default().threads() >= 1);
    }
}
