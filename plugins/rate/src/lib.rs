//! The `rate` metric plugin: rate functions of `docs/measures.md` M3 (rate–distortion,
//! directed rate–distortion with feed-forward) and M4 (rate–reward), plus channel
//! capacity: the exact math core for small alphabets, and token-semantic R(D) on a model.
//!
//! Metrics (all information quantities in nats unless `unit: "bits"`), one file each
//! under [`metrics`]:
//!
//! * `rate_distortion`: classic Blahut–Arimoto: a point at slope `beta`, a curve over
//!   `betas` (or a default grid), or `R(D)` at `target_distortion` / `distortions`;
//! * `rate_distortion_closed_form`: binary/Hamming, Gaussian/squared error, log-loss;
//! * `channel_capacity`: dual Blahut–Arimoto with the optimal input law;
//! * `directed_rate_distortion`: Naiss–Permuter directed BA on `n`-blocks (reconstruction);
//! * `rate_reward`: the exact KL-tilted optimum `π_λ ∝ π_ref e^{λ r}` (reconstruction);
//! * `rate_reward_channel`: `R(ρ) = min I(X;Y)` s.t. `E r ≥ ρ` by BA (reconstruction);
//! * `best_of_n_kl`: best-of-n KL, continuous and exact with ties;
//! * `rate_reward_is`: the frontier from reward samples by self-normalised importance
//!   sampling, with effective sample size and standard errors (reconstruction);
//! * `token_semantic_rd`: on a model: R(D) of the top-k next-token law with distortion
//!   1 − cos between embedding (or unembedding) rows, and the corpus operating point.
//!
//! Inputs that are laws or matrices are JSON parameters (f64) or, failing that, input
//! tensors of the same name (f32). All math is f64; result tensors are f32.

pub mod args;
pub mod blahut_arimoto;
pub mod capacity;
pub mod directed;
pub mod metrics;
pub mod reward;
pub mod util;

tokit_sdk::export_plugin! {
    name: "rate",
    version: env!("CARGO_PKG_VERSION"),
    description: "rate functions: rate–distortion (Blahut–Arimoto), channel capacity, directed rate–distortion with feed-forward, rate–reward (docs/measures.md M3, M4)",
    architectures: [],
    metrics: [
        metrics::RateDistortion,
        metrics::RateDistortionClosedForm,
        metrics::ChannelCapacity,
        metrics::DirectedRateDistortion,
        metrics::RateReward,
        metrics::RateRewardChannel,
        metrics::BestOfNKl,
        metrics::RateRewardIs,
        metrics::TokenSemanticRd,
    ],
}

#[cfg(test)]
mod tests;
