//! A small fork-join pool, the one the CPU backend runs most ops on: the calling thread
//! takes part, and the helpers spin for a short while after each job before they park.
//!
//! Single-token decoding issues a few hundred matrix-vector products and attention
//! steps per token, each some tens of microseconds of work, and a forward of a few
//! hundred tokens about as many ops of a few hundred microseconds. Handing each to the
//! rayon pool costs more than the op can spare: the caller sleeps on a latch while a
//! parked worker is woken (a futex wake, and on a virtual machine an interrupt to a
//! halted vCPU), then the caller is woken again. Here the caller publishes the job, runs tasks
//! itself, and the helpers, still spinning from the previous op, claim the rest; the
//! caller never sleeps, and a helper parks only after [`SPIN`] without work.
//!
//! Tasks are claimed one at a time from a shared counter, so a helper that the operating
//! system preempts delays the job by at most the task it holds. Which thread runs a task
//! never changes its result.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long a helper keeps spinning after its last job before it parks.
const SPIN: Duration = Duration::from_micros(400);

/// How long an idle helper only pauses between checks before it starts yielding its
/// core: a yield is a system call, and a job published meanwhile waits for it to
/// return (decoding with bf16 weights, a few hundred short ops a token: +4 %).
const PAUSE_ONLY: Duration = Duration::from_micros(50);

/// Busy-wait rounds (`pause`, some tens of nanoseconds each) before the caller waiting
/// for helpers starts yielding its core between checks, and between an idle helper's
/// looks at the clock.
const SPINS_BEFORE_YIELD: u32 = 128;

/// `state` bits: helpers inside the current job (low 16), whether it is open to
/// newcomers, and the job's number above.
const INSIDE: u64 = 0xffff;
const OPEN: u64 = 1 << 16;
const EPOCH: u64 = 1 << 17;

type Job = &'static (dyn Fn(usize) + Sync);

struct Shared {
    state: AtomicU64,
    /// The open job. Written by the caller only while no helper is inside and the job
    /// is closed; read by a helper only after it entered (its CAS on `state` acquires
    /// the caller's release store that opened the job).
    job: UnsafeCell<Option<Job>>,
    tasks: AtomicUsize,
    next: AtomicUsize,
    panicked: AtomicBool,
    sleeping: AtomicUsize,
    shutdown: AtomicBool,
}

// SAFETY: `job` is only accessed under the protocol described on the field.
unsafe impl Sync for Shared {}

/// Helpers (`threads - 1` of them, started on first use) and a try-lock, so that one
/// caller at a time uses them; a caller that finds them busy falls back to rayon.
pub(crate) struct SpinPool {
    threads: usize,
    shared: Arc<Shared>,
    busy: AtomicBool,
    helpers: Mutex<Vec<(Thread, JoinHandle<()>)>>,
}

thread_local! {
    /// The pool the current thread holds (see [`SpinPool::enter`]).
    static CURRENT: Cell<*const SpinPool> = const { Cell::new(std::ptr::null()) };
    /// Set while the thread runs a task of a job: nested [`for_each`]s run serially.
    static NESTED: Cell<bool> = const { Cell::new(false) };
}

impl SpinPool {
    /// A pool for `threads` threads in all, the caller included.
    pub(crate) fn new(threads: usize) -> SpinPool {
        SpinPool {
            threads: threads.max(1),
            shared: Arc::new(Shared {
                state: AtomicU64::new(0),
                job: UnsafeCell::new(None),
                tasks: AtomicUsize::new(0),
                next: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                sleeping: AtomicUsize::new(0),
                shutdown: AtomicBool::new(false),
            }),
            busy: AtomicBool::new(false),
            helpers: Mutex::new(Vec::new()),
        }
    }

    /// Takes the pool for the calling thread until the guard drops: [`for_each`] and
    /// [`threads`] on this thread then use it. `None` when another caller holds it, the
    /// thread already holds one, or a helper cannot be started.
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        if !CURRENT.get().is_null() || NESTED.get() {
            return None;
        }
        if self
            .busy
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return None;
        }
        if !self.start_helpers() {
            self.busy.store(false, Release);
            return None;
        }
        CURRENT.set(self);
        Some(Entered { pool: self })
    }

    fn start_helpers(&self) -> bool {
        let Ok(mut helpers) = self.helpers.lock() else {
            return false;
        };
        while helpers.len() + 1 < self.threads {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("tokit-spin-{}", helpers.len() + 1))
                .spawn(move || helper(&shared));
            match spawned {
                Ok(h) => helpers.push((h.thread().clone(), h)),
                Err(_) => return false,
            }
        }
        true
    }

    /// Runs `f(0..n)` on the caller and the helpers; returns when every task is done.
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if self.threads == 1 || n <= 1 {
            let _nested = Nested::enter();
            (0..n).for_each(f);
            return;
        }
        // SAFETY: the job is closed and no helper is inside (the previous `run` drained
        // them before returning), so nobody reads `job` now; `Close` below clears it
        // before `f`'s borrow ends, and no helper can enter after the close.
        unsafe {
            *s.job.get() = Some(std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f));
        }
        s.tasks.store(n, Relaxed);
        s.next.store(0, Relaxed);
        let epoch = s.state.load(Relaxed) / EPOCH + 1;
        s.state.store((epoch * EPOCH) | OPEN, SeqCst);
        if s.sleeping.load(SeqCst) > 0 {
            if let Ok(helpers) = self.helpers.lock() {
                helpers.iter().for_each(|(t, _)| t.unpark());
            }
        }
        /// Closes the job and waits for the helpers inside it, also when a task of the
        /// caller panics (the helpers must be out before `f` goes away).
        struct Close<'a>(&'a Shared);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                let s = self.0;
                s.state.fetch_and(!OPEN, AcqRel);
                let mut spins = 0u32;
                while s.state.load(Acquire) & INSIDE != 0 {
                    spins += 1;
                    if spins < SPINS_BEFORE_YIELD {
                        std::hint::spin_loop();
                    } else {
                        // The helper may be waiting for this very core (a busy
                        // machine): give it up rather than spin against it.
                        std::thread::yield_now();
                    }
                }
                // SAFETY: closed and drained: no helper reads `job` any more.
                unsafe { *s.job.get() = None };
            }
        }
        let close = Close(s);
        let mine = {
            let _nested = Nested::enter();
            catch_unwind(AssertUnwindSafe(|| claim(s, f)))
        };
        drop(close);
        let helper_panicked = s.panicked.swap(false, Relaxed);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if helper_panicked {
            panic!("a task of tokit's spinning pool panicked");
        }
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        let helpers = match self.helpers.get_mut() {
            Ok(h) => std::mem::take(h),
            Err(p) => std::mem::take(p.into_inner()),
        };
        for (t, h) in helpers {
            t.unpark();
            let _ = h.join();
        }
    }
}

/// Marks the calling thread as running tasks of a job until dropped (also on unwind).
struct Nested(bool);

impl Nested {
    fn enter() -> Nested {
        Nested(NESTED.replace(true))
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        NESTED.set(self.0);
    }
}

/// The pool held by the calling thread (see [`SpinPool::enter`]).
pub(crate) struct Entered<'a> {
    pool: &'a SpinPool,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.set(std::ptr::null());
        self.pool.busy.store(false, Release);
    }
}

/// Runs `f(t)` for every task `t < n` in parallel: on the pool the calling thread
/// holds, serially inside such a pool's task, else on the current rayon pool.
pub(crate) fn for_each(n: usize, f: impl Fn(usize) + Sync + Send) {
    if NESTED.get() {
        (0..n).for_each(f);
        return;
    }
    let pool = CURRENT.get();
    if pool.is_null() {
        (0..n).into_par_iter().for_each(f);
    } else {
        // SAFETY: CURRENT points at a pool kept alive by the `Entered` guard that set it.
        unsafe { &*pool }.run(n, &f);
    }
}

/// `f(first, piece)` over pieces of `out` made of whole rows of `row` values (`first`:
/// the piece's first row), in parallel as [`for_each`]: pieces of at most about
/// `PAR_CHUNK` values, as many for every thread (five pieces on two threads would keep
/// one thread waiting for a whole piece at the end).
pub(crate) fn rows_mut(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let (len, row) = (out.len(), row.max(1));
    let rows = len.div_ceil(row);
    if rows == 0 {
        return;
    }
    let threads = threads();
    let most = (super::elementwise::PAR_CHUNK / row).max(1);
    let per = rows
        .div_ceil(threads * rows.div_ceil(threads * most))
        .max(1);
    let base = super::gemm::OutPtr(out.as_mut_ptr());
    for_each(rows.div_ceil(per), |i| {
        let (s, e) = (i * per * row, ((i + 1) * per * row).min(len));
        // SAFETY: pieces are disjoint ranges of `out`, which outlives the call.
        f(i * per, unsafe {
            std::slice::from_raw_parts_mut(base.ptr().add(s), e - s)
        })
    });
}

/// How many threads [`for_each`] spreads over on this thread.
pub(crate) fn threads() -> usize {
    if NESTED.get() {
        return 1;
    }
    let pool = CURRENT.get();
    if pool.is_null() {
        rayon::current_num_threads()
    } else {
        // SAFETY: as in `for_each`.
        unsafe { &*pool }.threads
    }
}

/// Claims and runs tasks of the open job until none is left.
fn claim(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let n = s.tasks.load(Relaxed);
    loop {
        let t = s.next.fetch_add(1, Relaxed);
        if t >= n {
            return;
        }
        f(t);
    }
}

fn helper(s: &Shared) {
    NESTED.set(true);
    let mut seen = 0;
    let mut idle = Instant::now();
    let mut spins = 0u32;
    loop {
        if s.shutdown.load(Relaxed) {
            return;
        }
        let st = s.state.load(Acquire);
        if st & OPEN != 0 && st / EPOCH != seen {
            if s.state
                .compare_exchange_weak(st, st + 1, AcqRel, Relaxed)
                .is_ok()
            {
                seen = st / EPOCH;
                // SAFETY: entered an open job: `job` holds it until every helper inside
                // has left (see `Shared::job`).
                if let Some(f) = unsafe { *s.job.get() } {
                    if catch_unwind(AssertUnwindSafe(|| claim(s, f))).is_err() {
                        s.panicked.store(true, Relaxed);
                    }
                }
                s.state.fetch_sub(1, Release);
                idle = Instant::now();
                spins = 0;
            }
            continue;
        }
        // Pause between checks (reading the clock every SPINS_BEFORE_YIELD rounds) for
        // PAUSE_ONLY, then yield the core between checks until SPIN, then park.
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(SPINS_BEFORE_YIELD) || idle.elapsed() < PAUSE_ONLY {
            std::hint::spin_loop();
            continue;
        }
        if idle.elapsed() < SPIN {
            // Still ready within a microsecond, yet a thread that needs this core
            // (the caller itself on a busy machine) gets it.
            std::thread::yield_now();
            continue;
        }
        s.sleeping.fetch_add(1, SeqCst);
        let st = s.state.load(SeqCst);
        let pending = st & OPEN != 0 && st / EPOCH != seen;
        if !pending && !s.shutdown.load(SeqCst) {
            std::thread::park();
        }
        s.sleeping.fetch_sub(1, SeqCst);
        idle = Instant::now();
        spins = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn runs_every_task_once_across_jobs_and_after_parking() {
        let pool = SpinPool::new(3);
        let g = pool.enter().expect("free pool");
        assert!(pool.enter().is_none(), "one holder at a time");
        assert_eq!(threads(), 3);
        for round in 0..200 {
            let n = round % 37;
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            for_each(n, |t| {
                hits[t].fetch_add(1, Relaxed);
                // Nested calls run serially on the same thread.
                assert_eq!(threads(), 1);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "round {round}");
            if round % 50 == 0 {
                // Long enough for the helpers to park.
                std::thread::sleep(SPIN * 3);
            }
        }
        drop(g);
        assert!(pool.enter().is_some());
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_survives() {
        let pool = SpinPool::new(2);
        let _g = pool.enter().unwrap();
        for _ in 0..20 {
            let r = catch_unwind(|| for_each(64, |t| assert!(t != 40, "task 40")));
            assert!(r.is_err());
        }
        let sum = AtomicU32::new(0);
        for_each(100, |t| {
            sum.fetch_add(t as u32, Relaxed);
        });
        assert_eq!(sum.load(Relaxed), 4950);
    }
}
