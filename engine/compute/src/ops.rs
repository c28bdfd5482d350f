//! Backend-neutral descriptions of the ops: the elementwise/reduction op enums with
//! their stable string names (these names cross the plugin ABI), and the attention mask.

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used across the plugin ABI.
            pub fn name(&self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }

            /// Parses a name produced by [`Self::name`].
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($s => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

named_enum! {
    /// Elementwise ops on two broadcast operands.
    BinaryOp {
        Add => "add",
        Sub => "sub",
        Mul => "mul",
        Div => "div",
        /// NaN-propagating maximum (like `torch.maximum`).
        Max => "max",
        /// NaN-propagating minimum (like `torch.minimum`).
        Min => "min",
    }
}

named_enum! {
    /// Elementwise ops on one operand.
    UnaryOp {
        Neg => "neg",
        Exp => "exp",
        Log => "log",
        Sqrt => "sqrt",
        Rsqrt => "rsqrt",
        Abs => "abs",
        Tanh => "tanh",
        Sigmoid => "sigmoid",
        Relu => "relu",
        Silu => "silu",
        /// Exact GELU, `x * Φ(x)` with the error function (torch `gelu`, approximate='none').
        GeluErf => "gelu",
        /// Tanh-approximated GELU (GPT-2 `gelu_new`, torch approximate='tanh').
        GeluTanh => "gelu_tanh",
        /// `log(1 + e^x)`, returning `x` itself above 20 like torch.
        Softplus => "softplus",
    }
}

named_enum! {
    /// Reductions along one axis.
    ReduceOp {
        Sum => "sum",
        Mean => "mean",
        Max => "max",
        Min => "min",
    }
}

/// Which keys each query may attend to.
///
/// Query `i` sits at absolute position `q_offset + i`; key `j` sits at absolute position
/// `j`. A key is visible when all of these hold:
/// - `causal` is false, or `j <= q_offset + i`;
/// - `window` is `None`, or `j + window > q_offset + i` (a sliding window of `window`
///   positions that includes the query's own position, as in Mistral/HF);
/// - `key_keep` is `None`, or `key_keep[j]` is true (false removes the key from every
///   query, e.g. to ablate a position).
///
/// A query that sees no key at all gets an all-zero output and pattern row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttnMask {
    pub causal: bool,
    pub q_offset: usize,
    pub key_keep: Option<Vec<bool>>,
    pub window: Option<usize>,
}

impl AttnMask {
    /// No masking at all.
    pub fn none() -> AttnMask {
        AttnMask::default()
    }

    /// Plain causal masking with queries starting at position 0.
    pub fn causal() -> AttnMask {
        AttnMask {
            causal: true,
            ..AttnMask::default()
        }
    }

    /// Whether query `i` may see key `j` (ignores `key_keep` length checks).
    pub fn visible(&self, i: usize, j: usize) -> bool {
        let qpos = self.q_offset + i;
        if self.causal && j > qpos {
            return false;
        }
        if let Some(w) = self.window {
            if j + w <= qpos {
                return false;
            }
        }
        match &self.key_keep {
            Some(keep) => keep.get(j).copied().unwrap_or(false),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in BinaryOp::ALL {
            assert_eq!(BinaryOp::from_name(op.name()), Some(*op));
        }
        for op in UnaryOp::ALL {
            assert_eq!(UnaryOp::from_name(op.name()), Some(*op));
        }
        for op in ReduceOp::ALL {
            assert_eq!(ReduceOp::from_name(op.name()), Some(*op));
        }
        assert_eq!(UnaryOp::from_name("gelu"), Some(UnaryOp::GeluErf));
        assert_eq!(UnaryOp::from_name("gelu_tanh"), Some(UnaryOp::GeluTanh));
        assert_eq!(BinaryOp::from_name("pow"), None);
        assert_eq!(UnaryOp::ALL.len(), 13);
    }

    #[test]
    fn mask_visibility() {
        let m = AttnMask {
            causal: true,
            q_offset: 2,
            key_keep: Some(vec![true, false, true, true, true]),
            window: Some(2),
        };
        // Query 0 is at position 2: sees keys 1..=2 by window, key 1 removed.
        assert!(!m.visible(0, 0));
        assert!(!m.visible(0, 1));
        assert!(m.visible(0, 2));
        assert!(!m.visible(0, 3));
        assert!(m.visible(1, 3));
        assert!(AttnMask::none().visible(0, 100));
        assert!(!AttnMask::causal().visible(0, 1));
    }
}
