//! `boltzmann`: the Boltzmann view of each next-token law (`docs/measures.md` M1): free
//! energy F = −T ln Z, internal energy U, entropy H = (U − F)/T and heat capacity
//! C = Var(E)/T², on a model's text or on explicit logits rows.

use super::{score, se};
use crate::common::{require_causal, LawParams};
use crate::thermo;
use tokit_sdk::{bail, Error, Metric, MetricInput, MetricOutput, Result, Tensor};

pub struct Boltzmann;

const NOTE: &str = "heat capacity is dimensionless (Var of the energy in units of T²)";

impl Metric for Boltzmann {
    const NAME: &'static str = "boltzmann";
    const DESCRIPTION: &'static str = "Boltzmann view of each next-token law (M1): free energy F = −T ln Z, internal energy U, entropy H = (U − F)/T, heat capacity C = Var(E)/T²; value = mean C. Takes a model and text, or a `logits` tensor [N, V] whose rows are laws";
    type Params = LawParams;

    fn compute(input: &MetricInput, p: LawParams) -> Result<MetricOutput> {
        require_causal(input)?;
        if input.model.is_none() {
            return rows(input, &p);
        }
        let (sc, mut out) = score(input, &p)?;
        let (c, s, n) = (&sc.stats.corpus, p.unit.scale(), [sc.n]);
        out.value = Some(c.heat_capacity.value);
        let mut out = out
            .scalar("se", se(&c.heat_capacity, 1.0))
            .scalar("free_energy_mean", c.free_energy.value * s)
            .scalar("internal_energy_mean", c.internal_energy.value * s)
            .scalar("entropy_mean", c.entropy.value * s)
            .tensor("free_energy", &sc.local(&|q| q.free_energy, s), &n)?
            .tensor("internal_energy", &sc.local(&|q| q.internal_energy, s), &n)?
            .tensor("entropy", &sc.local(&|q| q.entropy, s), &n)?
            .tensor("heat_capacity", &sc.local(&|q| q.heat_capacity, 1.0), &n)?;
        out.notes.push(NOTE.into());
        Ok(out)
    }
}

/// On explicit logits: each row of `[N, V]` is a law.
fn rows(input: &MetricInput, p: &LawParams) -> Result<MetricOutput> {
    let logits: &Tensor = input.tensor("logits")?;
    let rows = logits.with_data(|data, shape| -> Result<Vec<thermo::Boltzmann>> {
        let v = *shape.last().unwrap_or(&0);
        if shape.len() > 2 || v == 0 {
            bail!("boltzmann: `logits` must be [N, V] or [V] with V > 0, got {shape:?}");
        }
        data.chunks(v)
            .map(|row| {
                thermo::boltzmann(row, p.temperature)
                    .map_err(|e| Error::msg(format!("boltzmann: {e}")))
            })
            .collect()
    })??;
    let (n, s) = (rows.len(), p.unit.scale());
    let col = |f: fn(&thermo::Boltzmann) -> f64, s: f64| -> Vec<f32> {
        rows.iter().map(|b| (f(b) * s) as f32).collect()
    };
    let mean = |f: fn(&thermo::Boltzmann) -> f64| rows.iter().map(f).sum::<f64>() / n as f64;
    let mut out = MetricOutput {
        value: Some(mean(|b| b.heat_capacity)),
        unit: p.unit.into(),
        estimator: "exact".into(),
        params: p.echo(input),
        ..Default::default()
    }
    .scalar("free_energy_mean", mean(|b| b.free_energy) * s)
    .scalar("internal_energy_mean", mean(|b| b.internal_energy) * s)
    .scalar("entropy_mean", mean(|b| b.entropy) * s)
    .scalar("log_z_mean", mean(|b| b.log_z))
    .tensor("free_energy", &col(|b| b.free_energy, s), &[n])?
    .tensor("internal_energy", &col(|b| b.internal_energy, s), &[n])?
    .tensor("entropy", &col(|b| b.entropy, s), &[n])?
    .tensor("heat_capacity", &col(|b| b.heat_capacity, 1.0), &[n])?;
    out.notes.push(NOTE.into());
    Ok(out)
}
