//! Host-owned tensors: a shape plus a contiguous row-major `f32` buffer.
//!
//! The buffer sits behind an `Arc` so that cloning a tensor, or reshaping it, is a
//! reference-count bump rather than a copy; ops always produce fresh buffers, so a
//! tensor's data is never mutated once it is shared.

use std::sync::Arc;

use anyhow::{bail, Result};

/// A contiguous row-major `f32` tensor. A shape of `[]` is a scalar holding one value.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; errors when the element counts differ.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::from_arc(shape, Arc::new(data))
    }

    /// Like [`Tensor::new`] but shares an existing buffer without copying it.
    pub fn from_arc(shape: Vec<usize>, data: Arc<Vec<f32>>) -> Result<Tensor> {
        let want = checked_numel(&shape)?;
        if want != data.len() {
            bail!(
                "tensor: shape {shape:?} holds {want} elements but the data has {}",
                data.len()
            );
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: Arc::new(vec![0.0; n]),
        }
    }

    /// A tensor of `shape` with every element equal to `value`.
    pub fn full(shape: Vec<usize>, value: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: Arc::new(vec![value; n]),
        }
    }

    /// A 0-dimensional tensor (shape `[]`) holding `v`.
    pub fn scalar(v: f32) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: Arc::new(vec![v]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The shared buffer, for callers that want to hand it on without copying.
    pub fn arc(&self) -> &Arc<Vec<f32>> {
        &self.data
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.data.as_ref().clone()
    }

    /// Takes the buffer out, copying only when it is still shared with another tensor.
    pub fn into_vec(self) -> Vec<f32> {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| shared.as_ref().clone())
    }

    /// The same data under another shape with the same element count (no copy).
    pub fn with_shape(&self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::from_arc(shape, Arc::clone(&self.data))
    }
}

/// Product of a shape's dimensions, erroring instead of overflowing.
fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| anyhow::anyhow!("tensor: shape {shape:?} has too many elements"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_accessors() {
        let t = Tensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.numel(), 6);
        assert_eq!(t.ndim(), 2);
        assert_eq!(t.to_vec(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

        let s = Tensor::scalar(2.5);
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.numel(), 1);
        assert_eq!(s.data(), &[2.5]);

        let z = Tensor::zeros(vec![3, 0]);
        assert_eq!(z.numel(), 0);
        assert_eq!(Tensor::zeros(vec![2, 2]).data(), &[0.0; 4]);
        assert_eq!(Tensor::full(vec![2], 7.0).data(), &[7.0, 7.0]);
    }

    #[test]
    fn clone_shares_the_buffer() {
        let t = Tensor::new(vec![4], vec![1.0; 4]).unwrap();
        let u = t.clone();
        assert!(Arc::ptr_eq(t.arc(), u.arc()));
        let r = t.with_shape(vec![2, 2]).unwrap();
        assert!(Arc::ptr_eq(t.arc(), r.arc()));
        drop((t, r));
        assert_eq!(u.into_vec(), vec![1.0; 4]);
    }

    #[test]
    fn size_mismatch_is_an_error_naming_both() {
        let err = Tensor::new(vec![2, 3], vec![0.0; 5])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[2, 3]") && err.contains('6') && err.contains('5'),
            "{err}"
        );
        assert!(Tensor::from_arc(vec![usize::MAX, 2], Arc::new(vec![])).is_err());
    }
}
