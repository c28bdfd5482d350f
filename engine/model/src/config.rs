//! A Hugging Face `config.json`, parsed tolerantly and read through accessors whose errors
//! name the file, the field and what was expected.
//!
//! Real checkpoints contain JSON that strict parsers reject: Python's `json.dump` writes bare
//! `Infinity`, `-Infinity` and `NaN` tokens, and some tools write
//! `{"__float__": "Infinity"}` objects instead (Mamba2's `time_step_limit` is the usual
//! example). Both spellings are accepted; such values are kept in the [`serde_json::Value`]
//! as the strings `"Infinity"`, `"-Infinity"` and `"NaN"`, and the numeric accessors
//! ([`HfConfig::get_f64`], [`HfConfig::opt_f64`], [`HfConfig::f64_array`]) read them back as
//! `f64::INFINITY`, `f64::NEG_INFINITY` and `f64::NAN`.
//!
//! Both config layouts are understood: the older one with top-level `rope_theta`,
//! `rope_scaling` and `torch_dtype`, and the transformers-5 one with
//! `rope_parameters: { rope_theta, rope_type, ... }` and `dtype`
//! (see [`HfConfig::rope_theta`], [`HfConfig::rope_scaling`], [`HfConfig::dtype`]).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// The string kept in the parsed value for positive infinity.
pub const INFINITY_STR: &str = "Infinity";
/// The string kept in the parsed value for negative infinity.
pub const NEG_INFINITY_STR: &str = "-Infinity";
/// The string kept in the parsed value for not-a-number.
pub const NAN_STR: &str = "NaN";

/// A parsed Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    path: PathBuf,
    value: Value,
}

impl HfConfig {
    /// Loads a config from a model directory (reading its `config.json`) or from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<HfConfig> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            let file = path.join("config.json");
            if !file.is_file() {
                bail!(
                    "model directory {}: no config.json (expected a Hugging Face model directory \
                     with config.json, *.safetensors and tokenizer.json)",
                    path.display()
                );
            }
            file
        } else if path.exists() {
            path.to_path_buf()
        } else {
            bail!(
                "{}: no such file or directory (expected a Hugging Face model directory with \
                 config.json, *.safetensors and tokenizer.json, or a config.json file)",
                path.display()
            );
        };
        let text =
            crate::read::read_text_bounded(&file, "model config", crate::read::CONFIG_LIMIT)?;
        HfConfig::parse(&text, file)
    }

    /// Parses config text; `path` is only used in error messages and [`HfConfig::path`].
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<HfConfig> {
        let path = path.into();
        let value =
            parse_tolerant(text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        if !value.is_object() {
            bail!(
                "{}: expected a JSON object at the top level, found {}",
                path.display(),
                describe(&value)
            );
        }
        Ok(HfConfig { path, value })
    }

    /// Wraps an already-parsed value (special floats should already be strings).
    pub fn from_value(value: Value, path: impl Into<PathBuf>) -> Result<HfConfig> {
        let path = path.into();
        if !value.is_object() {
            bail!(
                "{}: expected a JSON object at the top level, found {}",
                path.display(),
                describe(&value)
            );
        }
        Ok(HfConfig {
            path,
            value: normalize_special_floats(value),
        })
    }

    /// The file this config was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole parsed value (special floats as the strings `"Infinity"`, `"-Infinity"`,
    /// `"NaN"`).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Normalized JSON text of the whole config (compact; special floats as strings), the form
    /// handed on to plugins.
    pub fn to_json(&self) -> String {
        // Serializing a `Value` cannot fail: its keys are strings and it holds no non-finite
        // numbers (those are strings here).
        serde_json::to_string(&self.value).unwrap_or_else(|_| String::from("{}"))
    }

    /// Looks up a field by name or dotted path (`rope_scaling.factor`). A literal top-level
    /// key containing dots wins over the dotted reading. Missing fields, and paths through a
    /// `null`, give `Ok(None)`; a path through a non-object is an error.
    pub fn get(&self, field: &str) -> Result<Option<&Value>> {
        if let Some(v) = self.value.get(field) {
            return Ok(Some(v));
        }
        let mut cur = &self.value;
        let mut walked = String::new();
        for part in field.split('.') {
            match cur {
                Value::Object(map) => match map.get(part) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                },
                Value::Null => return Ok(None),
                other => bail!(
                    "{}: field `{}` should be an object (to read `{}`), found {}",
                    self.path.display(),
                    walked,
                    field,
                    describe(other)
                ),
            }
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(part);
        }
        Ok(Some(cur))
    }

    /// Whether a field is present and not null.
    pub fn has(&self, field: &str) -> bool {
        matches!(self.get(field), Ok(Some(v)) if !v.is_null())
    }

    fn present(&self, field: &str) -> Result<Option<&Value>> {
        Ok(self.get(field)?.filter(|v| !v.is_null()))
    }

    fn required(&self, field: &str, expected: &str) -> Result<&Value> {
        self.present(field)?.ok_or_else(|| {
            anyhow!(
                "{}: missing field `{}` (expected {})",
                self.path.display(),
                field,
                expected
            )
        })
    }

    fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> anyhow::Error {
        anyhow!(
            "{}: field `{}` should be {}, found {}",
            self.path.display(),
            field,
            expected,
            describe(found)
        )
    }

    fn as_usize(&self, field: &str, v: &Value) -> Result<usize> {
        const EXPECTED: &str = "a non-negative integer";
        if let Some(u) = v.as_u64() {
            return usize::try_from(u).map_err(|_| self.wrong_type(field, EXPECTED, v));
        }
        // Accept integral floats such as `4096.0`, which some exporters write.
        if let Some(f) = v.as_f64() {
            if f.fract() == 0.0 && f >= 0.0 && f <= usize::MAX as f64 {
                return Ok(f as usize);
            }
        }
        Err(self.wrong_type(field, EXPECTED, v))
    }

    /// A number; infinities are allowed (`time_step_limit` uses them), NaN never is: no
    /// config field means "not a number", and one would silently poison every result.
    fn as_f64(&self, field: &str, v: &Value) -> Result<f64> {
        match value_to_f64(v) {
            Some(f) if f.is_nan() => Err(self.wrong_type(field, "a number (not NaN)", v)),
            Some(f) => Ok(f),
            None => Err(self.wrong_type(field, "a number", v)),
        }
    }

    fn as_str<'a>(&self, field: &str, v: &'a Value) -> Result<&'a str> {
        v.as_str()
            .ok_or_else(|| self.wrong_type(field, "a string", v))
    }

    fn as_bool(&self, field: &str, v: &Value) -> Result<bool> {
        v.as_bool()
            .ok_or_else(|| self.wrong_type(field, "true or false", v))
    }

    /// A required non-negative integer field.
    pub fn get_usize(&self, field: &str) -> Result<usize> {
        let v = self.required(field, "a non-negative integer")?;
        self.as_usize(field, v)
    }

    /// A required number; `"Infinity"` and `"-Infinity"` read as the infinities, `"NaN"` is
    /// an error.
    pub fn get_f64(&self, field: &str) -> Result<f64> {
        let v = self.required(field, "a number")?;
        self.as_f64(field, v)
    }

    /// A required string field.
    pub fn get_str(&self, field: &str) -> Result<&str> {
        let v = self.required(field, "a string")?;
        self.as_str(field, v)
    }

    /// A required boolean field.
    pub fn get_bool(&self, field: &str) -> Result<bool> {
        let v = self.required(field, "true or false")?;
        self.as_bool(field, v)
    }

    /// An optional non-negative integer: missing or null gives `None`, a wrong type an error.
    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        self.present(field)?
            .map(|v| self.as_usize(field, v))
            .transpose()
    }

    /// An optional number: missing or null gives `None`, a wrong type an error.
    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        self.present(field)?
            .map(|v| self.as_f64(field, v))
            .transpose()
    }

    /// An optional string: missing or null gives `None`, a wrong type an error.
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        self.present(field)?
            .map(|v| self.as_str(field, v))
            .transpose()
    }

    /// An optional boolean: missing or null gives `None`, a wrong type an error.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        self.present(field)?
            .map(|v| self.as_bool(field, v))
            .transpose()
    }

    /// A required array of numbers (special floats allowed), e.g. `time_step_limit`.
    pub fn f64_array(&self, field: &str) -> Result<Vec<f64>> {
        let v = self.required(field, "an array of numbers")?;
        let arr = v
            .as_array()
            .ok_or_else(|| self.wrong_type(field, "an array of numbers", v))?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| self.as_f64(&format!("{field}[{i}]"), x))
            .collect()
    }

    /// A required array of non-negative integers.
    pub fn usize_array(&self, field: &str) -> Result<Vec<usize>> {
        let v = self.required(field, "an array of non-negative integers")?;
        let arr = v
            .as_array()
            .ok_or_else(|| self.wrong_type(field, "an array of non-negative integers", v))?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| self.as_usize(&format!("{field}[{i}]"), x))
            .collect()
    }

    /// `model_type`, e.g. `"llama"`.
    pub fn model_type(&self) -> Result<&str> {
        self.get_str("model_type")
    }

    /// `architectures`, e.g. `["LlamaForCausalLM"]`; missing gives an empty list.
    pub fn architectures(&self) -> Result<Vec<String>> {
        match self.present("architectures")? {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.wrong_type("architectures", "an array of strings", x))
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(other) => Err(self.wrong_type("architectures", "an array of strings", other)),
        }
    }

    /// The RoPE base: top-level `rope_theta` (older layout), else `rope_parameters.rope_theta`
    /// (transformers 5), else `rope_parameters.full_attention.rope_theta` (per-layer-type
    /// parameters). A missing or non-numeric value gives `None`.
    pub fn rope_theta(&self) -> Option<f64> {
        if let Some(v) = self.value.get("rope_theta").filter(|v| !v.is_null()) {
            return value_to_f64(v);
        }
        let params = self.rope_parameters()?;
        params.get("rope_theta").and_then(value_to_f64)
    }

    /// `rope_parameters` when present (transformers 5); for per-layer-type parameters
    /// (`{"full_attention": {...}, "sliding_attention": {...}}`) the `full_attention` entry.
    fn rope_parameters(&self) -> Option<&Map<String, Value>> {
        let params = self.value.get("rope_parameters")?.as_object()?;
        if params.contains_key("rope_type") || params.contains_key("rope_theta") {
            return Some(params);
        }
        params.get("full_attention")?.as_object()
    }

    /// The RoPE scaling parameters in one normalized form, from either layout: the object
    /// under `rope_scaling` (older layout) or `rope_parameters` minus its `rope_theta`
    /// (transformers 5). A `"type"` key is copied to `"rope_type"` when the latter is absent.
    /// `None` when there is no scaling: no such object, or `rope_type` `"default"`.
    pub fn rope_scaling(&self) -> Option<Value> {
        let mut map = match self.value.get("rope_scaling") {
            Some(Value::Object(m)) => m.clone(),
            _ => {
                let mut m = self.rope_parameters()?.clone();
                m.remove("rope_theta");
                m
            }
        };
        if !map.contains_key("rope_type") {
            if let Some(t) = map.get("type").cloned() {
                map.insert("rope_type".to_owned(), t);
            }
        }
        let is_default = map.get("rope_type").and_then(Value::as_str) == Some("default");
        if map.is_empty() || is_default {
            return None;
        }
        Some(Value::Object(map))
    }

    /// The checkpoint's storage dtype: `dtype` (transformers 5) or `torch_dtype` (older).
    pub fn dtype(&self) -> Option<&str> {
        self.value
            .get("dtype")
            .and_then(Value::as_str)
            .or_else(|| self.value.get("torch_dtype").and_then(Value::as_str))
    }
}

/// Reads a number, or one of the special-float strings, as `f64`.
pub fn value_to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => special_float(s),
        _ => None,
    }
}

/// Recognizes the spellings of non-finite floats seen in checkpoints.
fn special_float(s: &str) -> Option<f64> {
    match s {
        "Infinity" | "+Infinity" | "inf" | "+inf" | "Inf" | "infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" | "-Inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" | "-NaN" | "-nan" => Some(f64::NAN),
        _ => None,
    }
}

/// The canonical string for a special-float spelling.
fn canonical_special(s: &str) -> Option<&'static str> {
    special_float(s).map(|f| {
        if f.is_nan() {
            NAN_STR
        } else if f > 0.0 {
            INFINITY_STR
        } else {
            NEG_INFINITY_STR
        }
    })
}

/// Parses JSON that may contain bare `Infinity`, `-Infinity`, `NaN` tokens and
/// `{"__float__": ...}` objects; both become the canonical strings.
pub fn parse_tolerant(text: &str) -> Result<Value> {
    let quoted = quote_bare_specials(text);
    let value: Value = serde_json::from_str(&quoted)?;
    Ok(normalize_special_floats(value))
}

/// Rewrites bare `Infinity`, `-Infinity`, `+Infinity` and `NaN` tokens outside strings into
/// quoted canonical strings. Everything else is copied unchanged, so the JSON parser still
/// reports genuine syntax errors.
fn quote_bare_specials(text: &str) -> String {
    const TOKENS: [(&str, &str); 4] = [
        ("-Infinity", NEG_INFINITY_STR),
        ("+Infinity", INFINITY_STR),
        ("Infinity", INFINITY_STR),
        ("NaN", NAN_STR),
    ];
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let matched = TOKENS.iter().find(|(tok, _)| {
            rest.starts_with(tok)
                && !rest[tok.len()..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
        });
        if let Some((tok, canon)) = matched {
            out.push('"');
            out.push_str(canon);
            out.push('"');
            rest = &rest[tok.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Replaces `{"__float__": "Infinity"}`-style objects (value a string or number) with
/// canonical strings, and canonicalizes special-float strings spelled differently
/// (`"inf"`, `"-inf"`, `"nan"`) only inside such objects.
fn normalize_special_floats(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(inner) = map.get("__float__") {
                    match inner {
                        Value::String(s) => {
                            if let Some(canon) = canonical_special(s) {
                                return Value::String(canon.to_owned());
                            }
                            if let Ok(f) = s.trim().parse::<f64>() {
                                if let Some(n) = serde_json::Number::from_f64(f) {
                                    return Value::Number(n);
                                }
                            }
                        }
                        Value::Number(n) => return Value::Number(n.clone()),
                        _ => {}
                    }
                }
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, normalize_special_floats(v)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(normalize_special_floats).collect())
        }
        other => other,
    }
}

/// A short description of a value for error messages: its JSON text, truncated.
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = v.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    format!("{kind} ({text})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> HfConfig {
        match HfConfig::parse(text, "/m/config.json") {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e:#}"),
        }
    }

    #[test]
    fn bare_specials_outside_strings() {
        let c = cfg(
            r#"{"time_step_limit": [0.0, Infinity], "a": -Infinity, "b": NaN,
                        "s": "Infinity and NaN stay text", "t": "say \"NaN\" -Infinity",
                        "c": +Infinity}"#,
        );
        let lim = c.f64_array("time_step_limit").unwrap();
        assert_eq!(lim[0], 0.0);
        assert_eq!(lim[1], f64::INFINITY);
        assert_eq!(c.get_f64("a").unwrap(), f64::NEG_INFINITY);
        // NaN parses (the value keeps it) but is refused as a number, naming the field.
        let e = c.get_f64("b").unwrap_err().to_string();
        assert!(e.contains("`b`") && e.contains("not NaN"), "{e}");
        assert_eq!(c.get_f64("c").unwrap(), f64::INFINITY);
        assert_eq!(c.get_str("s").unwrap(), "Infinity and NaN stay text");
        assert_eq!(c.get_str("t").unwrap(), "say \"NaN\" -Infinity");
        assert_eq!(c.value()["time_step_limit"][1], Value::from("Infinity"));
        assert_eq!(c.value()["a"], Value::from("-Infinity"));
        // to_json is valid strict JSON
        let back: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(back["b"], Value::from("NaN"));
    }

    #[test]
    fn float_objects() {
        let c = cfg(r#"{"time_step_limit": [0.0, {"__float__": "Infinity"}],
                        "lo": {"__float__": "-Infinity"}, "n": {"__float__":"NaN"},
                        "x": {"__float__": "1.5"}}"#);
        let lim = c.f64_array("time_step_limit").unwrap();
        assert_eq!(lim, vec![0.0, f64::INFINITY]);
        assert_eq!(c.get_f64("lo").unwrap(), f64::NEG_INFINITY);
        assert!(c.opt_f64("n").is_err(), "NaN is refused");
        assert_eq!(c.get_f64("x").unwrap(), 1.5);
        assert_eq!(c.value()["time_step_limit"][1], Value::from("Infinity"));
    }

    #[test]
    fn genuine_syntax_errors_still_fail() {
        let err = HfConfig::parse(r#"{"a": Infinit}"#, "/m/config.json").unwrap_err();
        assert!(
            format!("{err:#}").contains("/m/config.json: not valid JSON"),
            "{err:#}"
        );
        let err = HfConfig::parse("[1, 2]", "/m/config.json").unwrap_err();
        assert!(err.to_string().contains("top level"), "{err}");
    }

    #[test]
    fn accessors_and_errors() {
        let c = cfg(
            r#"{"hidden_size": 64, "eps": 1e-5, "name": "x", "tie": true,
                        "nothing": null, "half": 2.5, "neg": -1, "whole": 8.0,
                        "rope_scaling": {"factor": 4.0, "type": "linear"}}"#,
        );
        assert_eq!(c.get_usize("hidden_size").unwrap(), 64);
        assert_eq!(c.get_usize("whole").unwrap(), 8);
        assert_eq!(c.get_f64("hidden_size").unwrap(), 64.0);
        assert_eq!(c.get_f64("eps").unwrap(), 1e-5);
        assert_eq!(c.get_str("name").unwrap(), "x");
        assert!(c.get_bool("tie").unwrap());
        assert_eq!(c.opt_usize("nothing").unwrap(), None);
        assert_eq!(c.opt_usize("absent").unwrap(), None);
        assert_eq!(c.opt_str("absent.deeper").unwrap(), None);
        assert_eq!(c.opt_bool("tie").unwrap(), Some(true));
        assert_eq!(c.get_f64("rope_scaling.factor").unwrap(), 4.0);
        assert_eq!(c.opt_str("rope_scaling.type").unwrap(), Some("linear"));
        assert!(c.has("rope_scaling.factor"));
        assert!(!c.has("nothing"));

        let e = c.get_usize("missing").unwrap_err().to_string();
        assert_eq!(
            e,
            "/m/config.json: missing field `missing` (expected a non-negative integer)"
        );
        let e = c.get_usize("name").unwrap_err().to_string();
        assert!(e.contains("/m/config.json"), "{e}");
        assert!(e.contains("`name`"), "{e}");
        assert!(e.contains("non-negative integer"), "{e}");
        assert!(c.get_usize("half").is_err());
        assert!(c.get_usize("neg").is_err());
        assert!(c.opt_usize("name").is_err());
        assert!(c.opt_f64("name").is_err());
        assert!(c.opt_bool("hidden_size").is_err());
        assert!(c.opt_str("hidden_size").is_err());
        let e = c.get_f64("name.inner").unwrap_err().to_string();
        assert!(e.contains("`name`") && e.contains("object"), "{e}");
    }

    #[test]
    fn model_type_and_architectures() {
        let c = cfg(r#"{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}"#);
        assert_eq!(c.model_type().unwrap(), "llama");
        assert_eq!(
            c.architectures().unwrap(),
            vec!["LlamaForCausalLM".to_string()]
        );
        let c = cfg(r#"{"architectures": [3]}"#);
        assert!(c.model_type().is_err());
        assert!(c.architectures().is_err());
        let c = cfg("{}");
        assert!(c.architectures().unwrap().is_empty());
    }

    #[test]
    fn rope_old_layout() {
        let c = cfg(r#"{"rope_theta": 500000.0, "torch_dtype": "bfloat16",
                        "rope_scaling": {"type": "linear", "factor": 2.0}}"#);
        assert_eq!(c.rope_theta(), Some(500000.0));
        assert_eq!(c.dtype(), Some("bfloat16"));
        let s = c.rope_scaling().unwrap();
        assert_eq!(s["rope_type"], Value::from("linear"));
        assert_eq!(s["factor"], Value::from(2.0));

        let c = cfg(r#"{"rope_theta": 10000, "rope_scaling": null}"#);
        assert_eq!(c.rope_theta(), Some(10000.0));
        assert_eq!(c.rope_scaling(), None);
    }

    #[test]
    fn rope_transformers5_layout() {
        let c = cfg(r#"{"dtype": "float16", "rope_parameters":
                        {"rope_theta": 1000000.0, "rope_type": "yarn", "factor": 4.0,
                         "original_max_position_embeddings": 32768}}"#);
        assert_eq!(c.rope_theta(), Some(1e6));
        assert_eq!(c.dtype(), Some("float16"));
        let s = c.rope_scaling().unwrap();
        assert_eq!(s["rope_type"], Value::from("yarn"));
        assert_eq!(s["factor"], Value::from(4.0));
        assert!(s.get("rope_theta").is_none());

        let c = cfg(r#"{"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}"#);
        assert_eq!(c.rope_theta(), Some(10000.0));
        assert_eq!(c.rope_scaling(), None);

        let c = cfg(r#"{"rope_parameters": {
                        "full_attention": {"rope_theta": 1000000.0, "rope_type": "linear", "factor": 8.0},
                        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}}"#);
        assert_eq!(c.rope_theta(), Some(1e6));
        assert_eq!(c.rope_scaling().unwrap()["factor"], Value::from(8.0));

        let c = cfg("{}");
        assert_eq!(c.rope_theta(), None);
        assert_eq!(c.rope_scaling(), None);
        assert_eq!(c.dtype(), None);
    }

    #[test]
    fn missing_config_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let err = HfConfig::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "model directory {}: no config.json (expected a Hugging Face model directory \
                 with config.json, *.safetensors and tokenizer.json)",
                dir.path().display()
            )
        );
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "gpt2", "x": NaN}"#,
        )
        .unwrap();
        let c = HfConfig::load(dir.path()).unwrap();
        assert_eq!(c.model_type().unwrap(), "gpt2");
        assert_eq!(c.path(), dir.path().join("config.json"));
        let c2 = HfConfig::load(dir.path().join("config.json")).unwrap();
        assert_eq!(c, c2);
        assert!(HfConfig::load(dir.path().join("nope")).is_err());
    }
}
