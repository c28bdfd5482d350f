//! What the metrics of next-token laws share: the `temperature` and `unit` parameters,
//! and the refusal of models whose logits are no next-token laws.

use serde_json::{json, Map, Value};
use tokit_sdk::{ensure, InfoUnit, MetricInput, Result};

tokit_sdk::params! {
    /// `temperature` and `unit`, declared by every metric that reads next-token laws.
    pub struct LawParams {
        /// temperature T of the Boltzmann law softmax(z / T)
        temperature: f64 = 1.0,
        /// `nats` or `bits` for information quantities (heat capacity is dimensionless)
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl LawParams {
    /// What a result records: the call's parameters with `temperature` and `unit` filled in.
    pub fn echo(&self, input: &MetricInput) -> Map<String, Value> {
        let mut params = input.params.clone();
        params.insert("temperature".into(), json!(self.temperature));
        params.insert("unit".into(), json!(self.unit.name()));
        params
    }
}

tokit_sdk::params! {
    /// `unit`, and `temperature` for metrics that have no use for one: older scripts pass
    /// it to every metric of this plugin, so the default is accepted and any other value
    /// refused ([`UnitParams::refuse_temperature`]).
    pub struct UnitParams {
        /// not used by this metric: only the default 1.0 is accepted
        temperature: f64 = 1.0,
        /// `nats` or `bits` for information quantities
        unit: InfoUnit = InfoUnit::Nats,
    }
}

impl UnitParams {
    /// Refuse a `temperature` other than 1 (NaN included): this metric would ignore it.
    pub fn refuse_temperature(&self, metric: &str) -> Result<()> {
        ensure!(
            self.temperature == 1.0,
            "{metric}: parameter `temperature` = {} is not used by this metric (only the default 1.0 is accepted)",
            self.temperature
        );
        Ok(())
    }
}

/// Refuse a bidirectional model: its logits row t − 1 is no law of token t (a masked-
/// diffusion mask predictor), and the metric reads it as one.
pub fn require_causal(input: &MetricInput) -> Result<()> {
    let Some(model) = &input.model else {
        return Ok(());
    };
    let info = model.info()?;
    ensure!(
        info.causal,
        "{}: model `{}` is not causal (its logits at position t are a law of the masked token t \
         given the whole sequence, not of the next token); this metric needs next-token laws. \
         For a masked-diffusion model use `elbo` (its likelihood bound) or `attention_energetics`",
        input.metric,
        info.arch
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokit_sdk::{Params, RawParams};

    fn parse(v: serde_json::Value) -> Result<UnitParams> {
        let m = v.as_object().unwrap().clone();
        UnitParams::parse(&RawParams::new("granger_map", &m))
    }

    #[test]
    fn an_unused_temperature_is_accepted_only_at_its_default() {
        assert!(parse(json!({}))
            .unwrap()
            .refuse_temperature("granger_map")
            .is_ok());
        let p = parse(json!({ "temperature": 1.0, "unit": "bits" })).unwrap();
        assert!(p.refuse_temperature("granger_map").is_ok());
        assert_eq!(p.unit, InfoUnit::Bits);
        let e = parse(json!({ "temperature": 0.5 }))
            .unwrap()
            .refuse_temperature("granger_map")
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("granger_map: parameter `temperature` = 0.5 is not used"),
            "{e}"
        );
    }
}
