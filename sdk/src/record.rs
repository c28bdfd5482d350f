//! The record of a metric's result, as it crosses the ABI: everything but the tensors,
//! which travel as handles. The SDK writes it from a `MetricOutput`; the engine reads it
//! into its report and adds the metric's name, plugin, version and provenance
//! (docs/architecture.md, "One metric").

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A metric result's record (JSON through `ResultSink::record`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricRecord {
    /// The value, when the measure is one number (`null` in JSON when NaN).
    pub value: Option<f64>,
    pub unit: String,
    /// How the value was obtained (`exact`, `plug-in`, `monte-carlo`, ...).
    pub estimator: String,
    /// Named scalars: standard error, p-value, bias-corrected value, ... (NaN is written
    /// as `null` and read back as NaN).
    #[serde(deserialize_with = "scalars_with_nan")]
    pub scalars: BTreeMap<String, f64>,
    /// Effective parameters (defaults filled in).
    pub params: Map<String, Value>,
    /// Ablation method used, for measures that ablate.
    pub ablation: Option<String>,
    pub notes: Vec<String>,
    /// How to draw the result (a plot spec object), if the metric declares one.
    pub plot: Option<Value>,
}

/// JSON has no NaN: serde_json writes it as `null`; read `null` back as NaN.
fn scalars_with_nan<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_scalars_and_missing_fields_round_trip() {
        let mut r = MetricRecord {
            value: Some(1.5),
            unit: "nats".into(),
            ..Default::default()
        };
        r.scalars.insert("se".into(), f64::NAN);
        r.scalars.insert("n".into(), 3.0);
        let back: MetricRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.value, Some(1.5));
        assert!(back.scalars["se"].is_nan());
        assert_eq!(back.scalars["n"], 3.0);
        let sparse: MetricRecord = serde_json::from_str(r#"{"value": null}"#).unwrap();
        assert_eq!(sparse.value, None);
        assert!(sparse.unit.is_empty() && sparse.notes.is_empty() && sparse.plot.is_none());
    }
}
