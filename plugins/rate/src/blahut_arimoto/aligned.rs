//! Buffers of `f32`/`f64` that start on a cache line (64 bytes), for the dense kernel.
//!
//! `Vec<f64>` is only 8-byte aligned (glibc hands out 16 mod 64 for large blocks), so
//! most 64-byte vector loads and stores of the kernel's vectors straddle two cache lines.
//! Aligning the output law `q` and the partial sums `v` took the `f32` row pass over 500
//! rows of 1000 from 0.14 to 0.12 ms on one core; the whole 1000 × 1000 SQUAREM solve of
//! `tools/ba_numpy.py` gained 3–7 % (alternating runs).

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

/// One cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

const ZERO: Line = Line([0; 8]);

/// Element types: plain numbers, for which all-zero bits are a value.
pub trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for f64 {}

/// `len` values of `T` from the start of a cache line.
pub struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    fn lines_for(len: usize) -> usize {
        (len * size_of::<T>()).div_ceil(size_of::<Line>())
    }

    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        Aligned {
            lines: vec![ZERO; Self::lines_for(len)],
            len,
            _t: PhantomData,
        }
    }

    /// `len` values to be written in place: [`Uninit::slots`], then
    /// [`Uninit::assume_init`].
    pub fn uninit(len: usize) -> Uninit<T> {
        let n = Self::lines_for(len);
        let mut lines = Vec::<Line>::with_capacity(n);
        if let Some(last) = lines.spare_capacity_mut()[..n].last_mut() {
            // The padding after the last value is part of a `Line`: give it a value.
            last.write(ZERO);
        }
        Uninit(Aligned {
            lines,
            len,
            _t: PhantomData,
        })
    }
}

/// An [`Aligned`] buffer whose values are being written.
pub struct Uninit<T: Plain>(Aligned<T>);

impl<T: Plain> Uninit<T> {
    /// The values' slots.
    pub fn slots(&mut self) -> &mut [MaybeUninit<T>] {
        let a = &mut self.0;
        // SAFETY: the capacity holds at least `len` values of `T` (`uninit`), with an
        // alignment that suits `T`; `MaybeUninit` needs no initialisation.
        unsafe {
            std::slice::from_raw_parts_mut(
                a.lines
                    .spare_capacity_mut()
                    .as_mut_ptr()
                    .cast::<MaybeUninit<T>>(),
                a.len,
            )
        }
    }

    /// The buffer, once every slot is written.
    ///
    /// # Safety
    /// Every one of the `len` slots has been written.
    pub unsafe fn assume_init(self) -> Aligned<T> {
        let mut a = self.0;
        let n = Aligned::<T>::lines_for(a.len);
        // SAFETY: the caller wrote every value and `uninit` zeroed the last line's
        // padding, so all `n` lines hold initialised bytes.
        unsafe { a.lines.set_len(n) };
        a
    }
}

impl<T: Plain> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold `len` initialised values of `T`, suitably aligned; any
        // bit pattern is a `T`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Plain> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::Aligned;

    #[test]
    fn starts_on_a_line_and_holds_its_values() {
        for len in [0, 1, 7, 8, 9, 1000] {
            let z = Aligned::<f64>::zeroed(len);
            assert_eq!((z.len(), z.as_ptr() as usize % 64), (len, 0));
            assert!(z.iter().all(|&v| v == 0.0));
            let mut a = Aligned::<f32>::zeroed(len);
            a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32));
            let mut b = Aligned::<f64>::uninit(len);
            for (i, o) in b.slots().iter_mut().enumerate() {
                o.write(2.0 * i as f64);
            }
            // SAFETY: the loop wrote every slot.
            let b = unsafe { b.assume_init() };
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert!(b.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f64));
        }
    }
}
