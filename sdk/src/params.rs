//! Typed metric parameters and units.
//!
//! A metric declares its parameters once, as a struct written with [`params!`](crate::params):
//! each field has a type, a default and a doc comment. The macro derives both the
//! [`ParamSpec`] list the host shows and checks calls against, and the parser that fills
//! the struct from the call's JSON, so a default is written in one place only.
//!
//! ```
//! tokit_sdk::params! {
//!     /// Parameters of a window metric.
//!     pub struct Params {
//!         /// window length in tokens
//!         window: usize = 4,
//!         /// `nats` or `bits`
//!         unit: tokit_sdk::InfoUnit = tokit_sdk::InfoUnit::Nats,
//!         /// layer to read (default: every layer)
//!         layer: Option<usize> = None,
//!     }
//! }
//! use tokit_sdk::{Params as _, RawParams};
//! let specs = Params::specs();
//! assert_eq!((specs[0].name.as_str(), specs[0].kind.as_str()), ("window", "integer"));
//! assert_eq!(specs[0].default, 4);
//! let call = serde_json::json!({ "window": 8, "unit": "bits" });
//! let p = Params::parse(&RawParams::new("demo", call.as_object().unwrap())).unwrap();
//! assert_eq!((p.window, p.unit, p.layer), (8, tokit_sdk::InfoUnit::Bits, None));
//! let bad = serde_json::json!({ "window": "wide" });
//! let e = Params::parse(&RawParams::new("demo", bad.as_object().unwrap())).unwrap_err();
//! assert_eq!(e.message(), "demo: parameter `window`: expected a non-negative integer, found \"wide\"");
//! ```
//!
//! Fields marked `#[flatten]` (no default) embed another parameter struct: its
//! parameters are declared in place, so groups shared by several metrics are written once.
//! A JSON `null` counts as absent. Parameters of kind `array` ([`Array`]) may also arrive
//! as an input tensor of the same name; their default applies only when neither is given.

use crate::error::{Error, Result};
use crate::metric::ParamSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// What a value is measured in (`MetricSpec::unit`, `MetricOutput::unit`). On the wire it
/// is the plain string: `"nats"`, `"bits"`, `"tokens"`, `""` (dimensionless), or any
/// other string a plugin writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Unit {
    #[default]
    Nats,
    Bits,
    Tokens,
    /// A pure number (perplexity, heat capacity): written `""`.
    Dimensionless,
    Other(Cow<'static, str>),
}

impl Unit {
    pub fn as_str(&self) -> &str {
        match self {
            Unit::Nats => "nats",
            Unit::Bits => "bits",
            Unit::Tokens => "tokens",
            Unit::Dimensionless => "",
            Unit::Other(s) => s,
        }
    }
}

impl From<String> for Unit {
    fn from(s: String) -> Unit {
        match s.as_str() {
            "nats" => Unit::Nats,
            "bits" => Unit::Bits,
            "tokens" => Unit::Tokens,
            "" => Unit::Dimensionless,
            _ => Unit::Other(Cow::Owned(s)),
        }
    }
}

impl From<Unit> for String {
    fn from(u: Unit) -> String {
        u.as_str().to_string()
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `unit` parameter of information quantities: every quantity is computed in nats
/// and converted on output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InfoUnit {
    #[default]
    Nats,
    Bits,
}

impl InfoUnit {
    /// Multiply a quantity in nats by this to express it in the unit (`1 / ln 2` for bits).
    pub fn scale(self) -> f64 {
        match self {
            InfoUnit::Nats => 1.0,
            InfoUnit::Bits => 1.0 / std::f64::consts::LN_2,
        }
    }

    /// A quantity in nats, in this unit.
    pub fn from_nats(self, nats: f64) -> f64 {
        nats * self.scale()
    }

    /// A quantity in this unit, in nats.
    pub fn to_nats(self, x: f64) -> f64 {
        x / self.scale()
    }

    pub fn name(self) -> &'static str {
        match self {
            InfoUnit::Nats => "nats",
            InfoUnit::Bits => "bits",
        }
    }
}

impl From<InfoUnit> for Unit {
    fn from(u: InfoUnit) -> Unit {
        match u {
            InfoUnit::Nats => Unit::Nats,
            InfoUnit::Bits => Unit::Bits,
        }
    }
}

/// A parameter value's type: its `kind` in the [`ParamSpec`] and its JSON form.
pub trait ParamValue: Sized {
    /// `number`, `integer`, `string`, `bool` or `array`.
    const KIND: &'static str;
    /// Parse a non-null value; the error says what was expected (`expected a number, found …`).
    fn from_json(v: &Value) -> std::result::Result<Self, String>;
    fn to_json(&self) -> Value;
    /// The value when the parameter is absent and `default` is declared; [`Array`] leaves it
    /// to the input tensor of that name when there is one.
    fn absent(default: Self, _tensor_given: bool) -> Self {
        default
    }
}

fn found(expected: &str, v: &Value) -> String {
    let mut shown = v.to_string();
    if shown.chars().count() > 80 {
        shown = shown.chars().take(77).collect::<String>() + "...";
    }
    format!("expected {expected}, found {shown}")
}

impl ParamValue for f64 {
    const KIND: &'static str = "number";
    fn from_json(v: &Value) -> std::result::Result<f64, String> {
        v.as_f64().ok_or_else(|| found("a number", v))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

/// Integers also accept a JSON number with no fractional part (`3.0`: script numbers).
fn integer(v: &Value) -> Option<u64> {
    match (v.as_u64(), v.as_f64()) {
        (Some(n), _) => Some(n),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Some(f as u64),
        _ => None,
    }
}

impl ParamValue for usize {
    const KIND: &'static str = "integer";
    fn from_json(v: &Value) -> std::result::Result<usize, String> {
        integer(v)
            .map(|n| n as usize)
            .ok_or_else(|| found("a non-negative integer", v))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ParamValue for u64 {
    const KIND: &'static str = "integer";
    fn from_json(v: &Value) -> std::result::Result<u64, String> {
        integer(v).ok_or_else(|| found("a non-negative integer", v))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ParamValue for bool {
    const KIND: &'static str = "bool";
    fn from_json(v: &Value) -> std::result::Result<bool, String> {
        v.as_bool().ok_or_else(|| found("true or false", v))
    }
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ParamValue for String {
    const KIND: &'static str = "string";
    fn from_json(v: &Value) -> std::result::Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| found("a string", v))
    }
    fn to_json(&self) -> Value {
        Value::from(self.as_str())
    }
}

impl ParamValue for InfoUnit {
    const KIND: &'static str = "string";
    fn from_json(v: &Value) -> std::result::Result<InfoUnit, String> {
        match v.as_str() {
            Some("nats" | "nat") => Ok(InfoUnit::Nats),
            Some("bits" | "bit") => Ok(InfoUnit::Bits),
            Some(other) => Err(format!("expected \"nats\" or \"bits\", found \"{other}\"")),
            None => Err(found("\"nats\" or \"bits\"", v)),
        }
    }
    fn to_json(&self) -> Value {
        Value::from(self.name())
    }
}

/// An optional parameter: absent (or `null`) is `None`.
impl<T: ParamValue> ParamValue for Option<T> {
    const KIND: &'static str = T::KIND;
    fn from_json(v: &Value) -> std::result::Result<Option<T>, String> {
        T::from_json(v).map(Some)
    }
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_json)
    }
}

/// A parameter of kind `array`, kept as JSON (laws, matrices, symbol streams): the metric
/// reads it itself, often with an input tensor of the same name as the alternative.
/// `None` when absent (or when the default is `null`, or a tensor of that name is given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Array(pub Option<Value>);

impl Array {
    /// No default.
    pub const NONE: Array = Array(None);

    /// A default value (`Array::of(json!([0.5, 0.5]))`).
    pub fn of(v: Value) -> Array {
        Array(Some(v))
    }

    pub fn get(&self) -> Option<&Value> {
        self.0.as_ref()
    }
}

impl ParamValue for Array {
    const KIND: &'static str = "array";
    fn from_json(v: &Value) -> std::result::Result<Array, String> {
        Ok(Array(Some(v.clone())))
    }
    fn to_json(&self) -> Value {
        self.0.clone().unwrap_or(Value::Null)
    }
    fn absent(default: Array, tensor_given: bool) -> Array {
        if tensor_given {
            Array(None)
        } else {
            default
        }
    }
}

/// A call's raw parameters: the metric's name (for errors), the JSON object, and the
/// names of the input tensors (an [`Array`] parameter may come as one).
pub struct RawParams<'a> {
    pub metric: &'a str,
    pub params: &'a Map<String, Value>,
    pub tensors: Vec<&'a str>,
}

impl<'a> RawParams<'a> {
    pub fn new(metric: &'a str, params: &'a Map<String, Value>) -> RawParams<'a> {
        RawParams {
            metric,
            params,
            tensors: Vec::new(),
        }
    }

    /// Parameter `name` as `T`: the given value, else `default`.
    pub fn get<T: ParamValue>(&self, name: &str, default: T) -> Result<T> {
        match self.params.get(name).filter(|v| !v.is_null()) {
            Some(v) => T::from_json(v).map_err(|e| self.error(name, e)),
            None => Ok(T::absent(default, self.tensors.contains(&name))),
        }
    }

    /// `"{metric}: parameter `{name}`: {msg}"`.
    pub fn error(&self, name: &str, msg: impl fmt::Display) -> Error {
        Error::msg(format!("{}: parameter `{name}`: {msg}", self.metric))
    }
}

/// A metric's parameters: the declared list and the parser (write it with
/// [`params!`](crate::params)).
pub trait Params: Sized {
    /// The parameters in declaration order, with kinds, defaults and docs.
    fn specs() -> Vec<ParamSpec>;
    /// Every declared parameter, given or defaulted; errors name the metric and parameter.
    fn parse(raw: &RawParams) -> Result<Self>;
    /// The effective values as JSON, by name (what a result records).
    fn effective(&self, out: &mut Map<String, Value>);
}

/// No parameters.
impl Params for () {
    fn specs() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn parse(_: &RawParams) -> Result<()> {
        Ok(())
    }
    fn effective(&self, _: &mut Map<String, Value>) {}
}

#[doc(hidden)]
pub fn doc_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Declare a metric's parameters as a struct; implements [`Params`] for it. Every field
/// is `/// doc` `name: Type = default,` (the trailing comma is required), or
/// `#[flatten] name: Group,` to embed another such struct. The field name is the
/// parameter name; the type ([`ParamValue`]) gives its kind. The struct derives `Clone` and
/// `Debug`. See [the module
/// docs](crate::params) for an example.
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($body:tt)* }
    ) => {
        $crate::params!(@munch [$(#[$meta])* $vis $name] [] $($body)*);
    };
    (@munch $head:tt [$($acc:tt)*] #[flatten] $field:ident : $ty:ty, $($rest:tt)*) => {
        $crate::params!(@munch $head [$($acc)* ($field, $ty, flatten)] $($rest)*);
    };
    (@munch $head:tt [$($acc:tt)*]
        $(#[doc = $doc:expr])* $field:ident : $ty:ty = $default:expr, $($rest:tt)*) => {
        $crate::params!(@munch $head [$($acc)* ($field, $ty, ($default, [$($doc),*]))] $($rest)*);
    };
    (@munch [$(#[$meta:meta])* $vis:vis $name:ident] [$(($field:ident, $ty:ty, $how:tt))*]) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            $(
                #[allow(missing_docs)]
                pub $field: $ty,
            )*
        }

        impl $crate::Params for $name {
            fn specs() -> ::std::vec::Vec<$crate::ParamSpec> {
                #[allow(unused_mut)]
                let mut v = ::std::vec::Vec::new();
                $( $crate::params!(@spec v, $field, $ty, $how); )*
                v
            }

            fn parse(raw: &$crate::RawParams) -> $crate::Result<$name> {
                ::std::result::Result::Ok($name {
                    $( $field: $crate::params!(@parse raw, $field, $ty, $how), )*
                })
            }

            fn effective(
                &self,
                out: &mut $crate::serde_json::Map<::std::string::String, $crate::serde_json::Value>,
            ) {
                $( $crate::params!(@effective self, out, $field, $ty, $how); )*
            }
        }
    };
    (@spec $v:ident, $field:ident, $ty:ty, flatten) => {
        $v.extend(<$ty as $crate::Params>::specs());
    };
    (@spec $v:ident, $field:ident, $ty:ty, ($default:expr, [$($doc:expr),*])) => {
        $v.push($crate::ParamSpec::new(
            stringify!($field),
            <$ty as $crate::ParamValue>::KIND,
            $crate::ParamValue::to_json(&{
                let d: $ty = $default;
                d
            }),
            &$crate::__private::doc_text(&[$($doc),*]),
        ));
    };
    (@parse $raw:ident, $field:ident, $ty:ty, flatten) => {
        <$ty as $crate::Params>::parse($raw)?
    };
    (@parse $raw:ident, $field:ident, $ty:ty, ($default:expr, [$($doc:expr),*])) => {
        $raw.get::<$ty>(stringify!($field), $default)?
    };
    (@effective $self:ident, $out:ident, $field:ident, $ty:ty, flatten) => {
        $crate::Params::effective(&$self.$field, $out);
    };
    (@effective $self:ident, $out:ident, $field:ident, $ty:ty, $how:tt) => {
        $out.insert(
            stringify!($field).into(),
            $crate::ParamValue::to_json(&$self.$field),
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    crate::params! {
        /// A shared group.
        struct Group {
            /// seed of the draws
            seed: u64 = 0,
        }
    }

    crate::params! {
        struct Demo {
            /// slope
            beta: Option<f64> = None,
            /// law of the source
            source: Array = Array::of(json!([0.5, 0.5])),
            #[flatten]
            group: Group,
            /// `nats` or `bits`
            unit: InfoUnit = InfoUnit::Nats,
        }
    }

    fn parse(v: Value, tensors: &[&'static str]) -> Result<Demo> {
        let m = v.as_object().unwrap().clone();
        let mut raw = RawParams::new("demo", &m);
        raw.tensors = tensors.to_vec();
        Demo::parse(&raw)
    }

    #[test]
    fn specs_follow_the_declaration() {
        let s = Demo::specs();
        let names: Vec<&str> = s.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["beta", "source", "seed", "unit"]);
        let kinds: Vec<&str> = s.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["number", "array", "integer", "string"]);
        assert_eq!(s[0].default, Value::Null);
        assert_eq!(s[1].default, json!([0.5, 0.5]));
        assert_eq!(s[3].default, json!("nats"));
        assert_eq!(s[2].doc, "seed of the draws");
    }

    #[test]
    fn parse_fills_defaults_and_names_errors() {
        let p = parse(json!({ "beta": 2, "seed": 3.0, "unit": null }), &[]).unwrap();
        assert_eq!(p.beta, Some(2.0));
        assert_eq!(p.group.seed, 3);
        assert_eq!(p.unit, InfoUnit::Nats);
        assert_eq!(p.source.get(), Some(&json!([0.5, 0.5])));
        // A tensor of the same name replaces an array's default.
        assert_eq!(parse(json!({}), &["source"]).unwrap().source, Array::NONE);
        let e = parse(json!({ "unit": "hartley" }), &[]).unwrap_err();
        assert_eq!(
            e.message(),
            "demo: parameter `unit`: expected \"nats\" or \"bits\", found \"hartley\""
        );
        let e = parse(json!({ "seed": [1, 2] }), &[]).unwrap_err();
        assert!(e
            .message()
            .contains("`seed`: expected a non-negative integer, found [1,2]"));
        let e = parse(json!({ "seed": -1 }), &[]).unwrap_err();
        assert!(e
            .message()
            .contains("`seed`: expected a non-negative integer, found -1"));
        let e = parse(json!({ "beta": "x".repeat(100) }), &[]).unwrap_err();
        assert!(e.message().ends_with("...") && e.message().len() < 140);
        let mut eff = Map::new();
        parse(json!({ "unit": "bits" }), &[])
            .unwrap()
            .effective(&mut eff);
        assert_eq!(
            Value::Object(eff),
            json!({ "beta": null, "source": [0.5, 0.5], "seed": 0, "unit": "bits" })
        );
    }

    #[test]
    fn units_keep_their_spelling() {
        for (u, s) in [
            (Unit::Nats, "nats"),
            (Unit::Bits, "bits"),
            (Unit::Tokens, "tokens"),
            (Unit::Dimensionless, ""),
            (Unit::Other("seconds".into()), "seconds"),
        ] {
            assert_eq!(serde_json::to_value(&u).unwrap(), json!(s));
            assert_eq!(serde_json::from_value::<Unit>(json!(s)).unwrap(), u);
        }
        assert_eq!(Unit::from(InfoUnit::Bits), Unit::Bits);
        assert!((InfoUnit::Bits.from_nats(std::f64::consts::LN_2) - 1.0).abs() < 1e-15);
    }
}
