//! Tensors: a shape plus contiguous row-major `f32` storage on the host, on a device,
//! or both.
//!
//! The storage sits behind an `Arc` so that cloning a tensor, or reshaping it, is a
//! reference-count bump rather than a copy; ops always produce fresh storage, so a
//! tensor's data is never mutated once it is shared. A tensor made by a device backend
//! holds only its device buffer; the host copy is read back once, on the first host
//! access ([`Tensor::data`]), and kept, so every host consumer works unchanged and pays
//! one copy per tensor. A host tensor a device backend uploads keeps its device copy
//! too, so weights cross the bus once.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Result};

/// A tensor's data in a device backend's memory.
pub trait DeviceData: Send + Sync {
    /// Reads the data back to the host (blocking; runs any pending device work first); an
    /// error when the device is lost or the readback fails.
    fn read(&self) -> anyhow::Result<Vec<f32>>;
    /// Number of f32 elements.
    fn numel(&self) -> usize;
    /// For the owning backend to recover its buffer type.
    fn as_any(&self) -> &dyn Any;
}

/// Host and/or device copies of the same elements; at least one is set.
#[derive(Default)]
struct Storage {
    host: OnceLock<Arc<Vec<f32>>>,
    device: OnceLock<Arc<dyn DeviceData>>,
    /// A backend's own derived form of these elements (e.g. the CPU backend's
    /// half-precision copy of a weight matrix), made once on first use.
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Storage {
    /// The host copy, read back from the device on first use.
    fn try_host(&self) -> anyhow::Result<&Arc<Vec<f32>>> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let dev = self.device.get().expect("tensor storage has neither copy");
        let data = dev.read()?;
        Ok(self.host.get_or_init(|| Arc::new(data)))
    }

    /// [`Storage::try_host`] for the infallible accessors.
    ///
    /// # Panics
    /// When the readback fails (a lost device): use [`Tensor::try_data`] where that must
    /// be an error.
    fn host(&self) -> &Arc<Vec<f32>> {
        self.try_host().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// A contiguous row-major `f32` tensor. A shape of `[]` is a scalar holding one value.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
    numel: usize,
    /// Model weights (set by the host when it hands them to plugins): a device backend
    /// may store them at lower precision when asked to (see `GpuBackend`).
    weight: bool,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Tensor");
        d.field("shape", &self.shape);
        match self.storage.host.get() {
            Some(h) => d.field("data", h),
            None => d.field("data", &"<on device>"),
        };
        d.finish()
    }
}

fn host_storage(data: Arc<Vec<f32>>) -> Arc<Storage> {
    let s = Storage::default();
    let _ = s.host.set(data);
    Arc::new(s)
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
        let numel = data.len();
        Ok(Tensor {
            shape,
            storage: host_storage(data),
            numel,
            weight: false,
        })
    }

    /// A tensor whose data lives on a device; errors when the element counts differ.
    pub fn from_device(shape: Vec<usize>, data: Arc<dyn DeviceData>) -> Result<Tensor> {
        let numel = checked_numel(&shape)?;
        if numel != data.numel() {
            bail!(
                "tensor: shape {shape:?} holds {numel} elements but the device buffer has {}",
                data.numel()
            );
        }
        let s = Storage::default();
        let _ = s.device.set(data);
        Ok(Tensor {
            shape,
            storage: Arc::new(s),
            numel,
            weight: false,
        })
    }

    /// The same tensor marked as model weights (kept by clones and reshapes; results
    /// of ops are never weights).
    pub fn into_weight(mut self) -> Tensor {
        self.weight = true;
        self
    }

    /// Whether this tensor holds model weights (see [`Tensor::into_weight`]).
    pub fn is_weight(&self) -> bool {
        self.weight
    }

    /// The derived form of this tensor's elements that `make` builds, made on the first
    /// call and kept with the storage (shared by clones and reshapes). `None` when a
    /// derived form of another type was made first.
    pub fn derived<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<Arc<T>> {
        let d = self.storage.derived.get_or_init(|| Arc::new(make()));
        Arc::clone(d).downcast::<T>().ok()
    }

    /// The device copy, if there is one.
    pub fn device(&self) -> Option<&Arc<dyn DeviceData>> {
        self.storage.device.get()
    }

    /// Attaches a device copy to a host tensor (kept for later ops); returns the copy
    /// now in place, which is `data` unless another thread attached one first.
    pub fn cache_device(&self, data: Arc<dyn DeviceData>) -> &Arc<dyn DeviceData> {
        self.storage.device.get_or_init(|| data)
    }

    /// Whether the host copy exists (false for device results not read back yet).
    pub fn on_host(&self) -> bool {
        self.storage.host.get().is_some()
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            storage: host_storage(Arc::new(vec![0.0; n])),
            numel: n,
            weight: false,
        }
    }

    /// A tensor of `shape` with every element equal to `value`.
    pub fn full(shape: Vec<usize>, value: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            storage: host_storage(Arc::new(vec![value; n])),
            numel: n,
            weight: false,
        }
    }

    /// A 0-dimensional tensor (shape `[]`) holding `v`.
    pub fn scalar(v: f32) -> Tensor {
        Tensor {
            shape: Vec::new(),
            storage: host_storage(Arc::new(vec![v])),
            numel: 1,
            weight: false,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements on the host (read back from the device on first use).
    ///
    /// # Panics
    /// When a device readback fails; [`Tensor::try_data`] returns that as an error.
    pub fn data(&self) -> &[f32] {
        self.storage.host()
    }

    /// The elements on the host, or the error of a failed device readback (a lost GPU).
    pub fn try_data(&self) -> anyhow::Result<&[f32]> {
        Ok(self.storage.try_host()?.as_slice())
    }

    /// The shared host buffer, for callers that want to hand it on without copying.
    pub fn arc(&self) -> &Arc<Vec<f32>> {
        self.storage.host()
    }

    pub fn numel(&self) -> usize {
        self.numel
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.data().to_vec()
    }

    /// Takes the buffer out, copying only when it is still shared with another tensor.
    pub fn into_vec(self) -> Vec<f32> {
        self.arc();
        match Arc::try_unwrap(self.storage) {
            Ok(s) => {
                let host = s.host.into_inner().expect("host copy was just made");
                Arc::try_unwrap(host).unwrap_or_else(|shared| shared.as_ref().clone())
            }
            Err(shared) => shared.host().as_ref().clone(),
        }
    }

    /// The same data under another shape with the same element count (no copy, on the
    /// host or the device).
    pub fn with_shape(&self, shape: Vec<usize>) -> Result<Tensor> {
        let want = checked_numel(&shape)?;
        if want != self.numel {
            bail!(
                "tensor: shape {shape:?} holds {want} elements but the data has {}",
                self.numel
            );
        }
        Ok(Tensor {
            shape,
            storage: Arc::clone(&self.storage),
            numel: want,
            weight: self.weight,
        })
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

    /// A device whose readback fails, as a lost GPU does.
    struct LostDevice;

    impl DeviceData for LostDevice {
        fn read(&self) -> anyhow::Result<Vec<f32>> {
            anyhow::bail!("device lost")
        }
        fn numel(&self) -> usize {
            2
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn a_failed_readback_is_an_error_from_try_data() {
        let t = Tensor::from_device(vec![2], Arc::new(LostDevice)).unwrap();
        let e = t.try_data().unwrap_err();
        assert!(format!("{e:#}").contains("device lost"));
        assert!(!t.on_host());
    }

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
    fn the_weight_mark_survives_clones_and_reshapes_but_not_new_tensors() {
        let w = Tensor::new(vec![2, 2], vec![1.0; 4]).unwrap();
        assert!(!w.is_weight());
        let w = w.into_weight();
        assert!(w.clone().is_weight() && w.with_shape(vec![4]).unwrap().is_weight());
        assert!(!Tensor::new(vec![4], w.to_vec()).unwrap().is_weight());
    }

    #[test]
    fn the_derived_form_is_made_once_and_shared_by_reshapes() {
        let w = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut calls = 0;
        let d = w.derived(|| {
            calls += 1;
            w.data().iter().sum::<f32>()
        });
        assert_eq!(d.as_deref(), Some(&10.0));
        let r = w.with_shape(vec![4]).unwrap();
        assert_eq!(
            r.derived(|| -> f32 { unreachable!() }).as_deref(),
            Some(&10.0)
        );
        assert_eq!(calls, 1);
        assert!(w.derived(|| 0u8).is_none(), "another type is refused");
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
