//! The `info` metric plugin: per-token information of a model's next-token law
//! (`docs/measures.md` M1: surprisal, entropy, cross-entropy, perplexity, and the Boltzmann
//! quantities free energy, internal energy, heat capacity), as local (per-token) values
//! and corpus aggregates with standard errors; measures of a model's inner workings
//! (Granger map, information flow, logit lens, attention energetics, sequence KL, ELBO);
//! and information measures of symbol streams and real series with no model (transfer
//! entropy, active information, directed information, Granger causality, exact M2/M5 toy
//! oracles: [`streams`]).
//!
//! Every metric is one type in its own file, listed once in the table at the bottom.

pub mod attention;
pub mod capacity;
pub mod common;
pub mod elbo;
pub mod generalization;
pub mod geometry;
pub mod granger_map;
pub mod information_flow;
pub mod logit_lens;
pub mod mdm_likelihood;
pub mod next_token;
pub mod sequence_kl;
pub mod streams;
pub mod thermo;
pub mod token_stats;

use streams::metrics as stream;

tokit_sdk::export_plugin! {
    name: "info",
    version: env!("CARGO_PKG_VERSION"),
    description: "information of next-token laws: surprisal, entropy, cross-entropy, perplexity, Boltzmann quantities (docs/measures.md M1); information of symbol streams and series: entropy rate, active information, transfer entropy, directed information, Granger causality, exact toy oracles (M2, M5, M6)",
    architectures: [],
    metrics: [
        next_token::TokenStats,
        next_token::Surprisal,
        next_token::Entropy,
        next_token::CrossEntropy,
        next_token::Perplexity,
        granger_map::GrangerMap,
        information_flow::InformationFlow,
        logit_lens::LogitLens,
        attention::AttentionEnergetics,
        sequence_kl::SequenceKl,
        next_token::Boltzmann,
        stream::StreamEntropy,
        stream::BlockEntropy,
        stream::EntropyRate,
        stream::ActiveInfo,
        stream::TransferEntropy,
        stream::MutualInfo,
        stream::DirectedInfo,
        stream::Granger,
        stream::GaussianTe,
        stream::ExactDirectedInfo,
        stream::InfoFlow,
        elbo::Elbo,
        capacity::MemoryCapacity,
        capacity::probe::CapacityProbe,
        generalization::GeneralizationBound,
        geometry::EmbeddingGeometry,
        geometry::gw::GromovWasserstein,
        mdm_likelihood::MdmLikelihood,
    ],
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_names_are_unique() {
        let mut names: Vec<&str> = crate::__TOKIT_REGISTRY
            .metrics
            .iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names.len(), 29);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 29, "two metrics share a name");
    }
}
