//! Information measures of symbol streams and real-valued series, with no model needed
//! (`docs/measures.md` M2, M5, M6), plus exact toy oracles.
//!
//! * Plug-in estimators on symbol streams, counted densely for small alphabets
//!   ([`dense`]) and sparsely otherwise ([`counting`], [`estimate`]): entropy,
//!   block entropy, entropy rate ([`entropy`]), active information storage ([`ais`]),
//!   transfer entropy and conditional TE ([`transfer`]), mutual and conditional mutual
//!   information ([`mutual`]), directed information under a finite-memory assumption
//!   ([`directed`]); local (per-time-step) values whose mean is the global value; optional
//!   Miller–Madow correction; several trials pooled like pyinform's 2-D input
//!   ([`series`]).
//! * Permutation significance with shuffle / circular / block surrogates
//!   ([`significance`]).
//! * Linear-Gaussian Granger causality and Gaussian TE, matching statsmodels'
//!   `grangercausalitytests` ([`granger`]).
//! * Exact oracles on enumerated joints: directed information, mutual information and
//!   the conservation law ([`joint`], M2); the information-flow sub-martingale ([`flow`],
//!   M5).
//! * The metrics exposing all of it, one type per metric ([`metrics`]).
//!
//! Everything is computed in nats; conversion to bits happens on output.

pub mod ais;
pub mod counting;
pub mod dense;
pub mod directed;
pub mod entropy;
pub mod estimate;
pub mod flow;
pub mod granger;
pub mod joint;
pub mod measure;
pub mod metrics;
pub mod mutual;
pub mod rng;
pub mod series;
pub mod significance;
pub mod transfer;

#[cfg(test)]
mod crosscheck;
