//! The wgpu device behind [`super::GpuBackend`]: adapter choice, the pipeline cache, the
//! buffer pool, batched command encoding and readback.
//!
//! Dispatches are recorded into one pending command encoder and submitted only when
//! data is read back (or after [`MAX_PENDING`] dispatches, to bound the memory held by
//! recorded work). Output buffers come from a pool bucketed by power-of-two size and
//! return to it when their tensor is dropped; reuse inside one pending encoder is safe
//! because commands in an encoder run in order. Nothing is ever written with
//! `queue.write_buffer` (which would run before already recorded commands): uploads and
//! kernel parameters go into fresh buffers filled at creation.
//!
//! A buffer holds f32s, or (for weights stored at half precision) IEEE halves packed two
//! to a u32 word, element `2i` in the low half, as WGSL's `unpack2x16float` reads them.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, bail, Result};
use wgpu::util::DeviceExt;

use crate::tensor::DeviceData;
use crate::Tensor;

/// Dispatches recorded before a submit is forced.
const MAX_PENDING: usize = 512;

/// Usage of every tensor buffer.
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Host → device tensor copies.
    pub uploads: u64,
    /// Device → host tensor copies.
    pub readbacks: u64,
    /// Queue submissions.
    pub submits: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Pipelines compiled (each kernel and specialisation once).
    pub pipelines: u64,
    /// Output buffers served from the pool instead of allocated.
    pub pool_hits: u64,
    /// Ops run on the CPU for want of a kernel ([`super::GpuBackend::on_cpu`]).
    pub cpu_fallbacks: u64,
    /// Bytes of the host → device tensor copies (what uploaded weights occupy).
    pub upload_bytes: u64,
    /// Half-precision device copies widened to f32 for an op that reads only f32.
    pub widenings: u64,
}

/// Counts of every device in the process (see [`total_stats`]).
static TOTAL: Counters = Counters::new();

/// The counters summed over every GPU device of the process.
pub fn total_stats() -> GpuStats {
    TOTAL.snapshot()
}

struct Counters {
    uploads: AtomicU64,
    readbacks: AtomicU64,
    submits: AtomicU64,
    dispatches: AtomicU64,
    pipelines: AtomicU64,
    pool_hits: AtomicU64,
    cpu_fallbacks: AtomicU64,
    upload_bytes: AtomicU64,
    widenings: AtomicU64,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            uploads: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
            submits: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
            pipelines: AtomicU64::new(0),
            pool_hits: AtomicU64::new(0),
            cpu_fallbacks: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            widenings: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> GpuStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GpuStats {
            uploads: g(&self.uploads),
            readbacks: g(&self.readbacks),
            submits: g(&self.submits),
            dispatches: g(&self.dispatches),
            pipelines: g(&self.pipelines),
            pool_hits: g(&self.pool_hits),
            cpu_fallbacks: g(&self.cpu_fallbacks),
            upload_bytes: g(&self.upload_bytes),
            widenings: g(&self.widenings),
        }
    }
}

/// A kernel: its name (for the cache and errors) and its WGSL source.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
}

/// A pipeline specialisation: the kernel plus its override constants.
type PipelineKey = (&'static str, Vec<(&'static str, u64)>);

pub(crate) struct Context {
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub shader_f16: bool,
    pub max_binding: u64,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    pending: Mutex<Option<(wgpu::CommandEncoder, usize)>>,
    counters: Counters,
}

/// Locks a mutex, ignoring poisoning (the guarded state stays consistent: every
/// critical section either completes or leaves plain data behind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lists the usable adapters, best first (discrete, integrated, virtual, then CPU).
pub(crate) fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
        // No debug messenger: a machine without drivers must not print loader errors
        // every time `auto` looks for a GPU.
        flags: wgpu::InstanceFlags::empty(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    list.sort_by_key(rank);
    list
}

/// Whether an adapter is a real GPU (not a software rasteriser such as lavapipe).
pub(crate) fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    matches!(
        info.device_type,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    )
}

impl Context {
    pub fn new(adapter: wgpu::Adapter) -> Result<Arc<Context>> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let info = adapter.get_info();
        let shader_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tokit"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| anyhow!("gpu: cannot open a device on adapter `{}`: {e}", info.name))?;
        Ok(Arc::new(Context {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            info,
            shader_f16,
            max_binding: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
            counters: Counters::new(),
        }))
    }

    pub fn stats(&self) -> GpuStats {
        self.counters.snapshot()
    }

    /// Bumps one counter of this device and of the process total.
    /// Counts one op run on the CPU instead.
    pub fn count_fallback(&self) {
        self.count(|c| &c.cpu_fallbacks);
    }

    /// Counts one half-precision copy widened to f32.
    pub fn count_widening(&self) {
        self.count(|c| &c.widenings);
    }

    fn count(&self, which: fn(&Counters) -> &AtomicU64) {
        self.add(which, 1);
    }

    fn add(&self, which: fn(&Counters) -> &AtomicU64, n: u64) {
        which(&self.counters).fetch_add(n, Ordering::Relaxed);
        which(&TOTAL).fetch_add(n, Ordering::Relaxed);
    }

    fn check_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_binding {
            bail!(
                "gpu: a tensor of {bytes} bytes exceeds the adapter's storage binding limit of {} \
                 bytes (`{}`); use --backend cpu for this model",
                self.max_binding,
                self.info.name
            );
        }
        Ok(())
    }

    /// A pooled output buffer for `numel` f32s (contents undefined).
    pub fn alloc(self: &Arc<Self>, numel: usize) -> Result<GpuBuf> {
        let exact = numel.max(1) as u64 * 4;
        self.check_size(exact)?;
        let mut bytes = exact.next_power_of_two().max(256);
        if bytes > self.max_binding {
            // Near the limit, the bucket is the size itself.
            bytes = exact;
        }
        let reused = lock(&self.pool).get_mut(&bytes).and_then(Vec::pop);
        let buf = match reused {
            Some(b) => {
                self.count(|c| &c.pool_hits);
                b
            }
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: TENSOR_USAGE,
                mapped_at_creation: false,
            }),
        };
        Ok(GpuBuf {
            ctx: Arc::clone(self),
            buf: Some(buf),
            numel,
            pooled: true,
            half: false,
        })
    }

    /// A buffer holding `bytes` (f32, u32 or packed f16 words: `half`), outside the pool.
    fn upload_words(self: &Arc<Self>, bytes: &[u8], numel: usize, half: bool) -> Result<GpuBuf> {
        self.check_size(bytes.len() as u64)?;
        let contents: Cow<[u8]> = if bytes.is_empty() {
            Cow::Owned(vec![0u8; 4])
        } else {
            Cow::Borrowed(bytes)
        };
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &contents,
                usage: TENSOR_USAGE,
            });
        Ok(GpuBuf {
            ctx: Arc::clone(self),
            buf: Some(buf),
            numel,
            pooled: false,
            half,
        })
    }

    pub fn upload_f32(self: &Arc<Self>, data: &[f32]) -> Result<GpuBuf> {
        self.upload_words(bytemuck::cast_slice(data), data.len(), false)
    }

    pub fn upload_u32(self: &Arc<Self>, data: &[u32]) -> Result<GpuBuf> {
        self.upload_words(bytemuck::cast_slice(data), data.len(), false)
    }

    /// `data` rounded to the nearest half (ties to even), packed two to a word.
    fn upload_f16(self: &Arc<Self>, data: &[f32]) -> Result<GpuBuf> {
        let mut halves: Vec<u16> = data
            .iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect();
        // Whole words: an odd count gets one padding half.
        halves.resize(data.len().div_ceil(2) * 2, 0);
        self.upload_words(bytemuck::cast_slice(&halves), data.len(), true)
    }

    /// The device buffer of `t`: its own if it was made on this device, else an upload
    /// of its host data (as packed halves when `half`), cached on the tensor so that
    /// weights are copied once. A cached copy is returned as it is, f32 or half.
    pub fn buffer_of(self: &Arc<Self>, t: &Tensor, half: bool) -> Result<Arc<dyn DeviceData>> {
        if let Some(d) = t.device() {
            if d.as_any()
                .downcast_ref::<GpuBuf>()
                .is_some_and(|b| b.ctx.id == self.id)
            {
                return Ok(Arc::clone(d));
            }
        }
        let buf = if half {
            self.upload_f16(t.data())?
        } else {
            self.upload_f32(t.data())?
        };
        self.count(|c| &c.uploads);
        self.add(|c| &c.upload_bytes, buf.raw().size());
        let up: Arc<dyn DeviceData> = Arc::new(buf);
        if t.device().is_none() {
            return Ok(Arc::clone(t.cache_device(up)));
        }
        // The tensor already lives on another device: do not replace its copy.
        Ok(up)
    }

    fn pipeline(&self, kernel: Kernel, consts: &[(&'static str, f64)]) -> wgpu::ComputePipeline {
        let key = (
            kernel.name,
            consts.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        );
        let mut cache = lock(&self.pipelines);
        if let Some(p) = cache.get(&key) {
            return p.clone();
        }
        let source = format!("{}\n{}", include_str!("common.wgsl"), kernel.source);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
            });
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: consts,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.count(|c| &c.pipelines);
        cache.insert(key, p.clone());
        p
    }

    /// Records one dispatch of `kernel`: binding 0 is `params` (u32 words), bindings
    /// 1.. are `buffers` in order (the kernel's inputs, then its outputs).
    pub fn dispatch(
        &self,
        kernel: Kernel,
        consts: &[(&'static str, f64)],
        params: &[u32],
        buffers: &[&GpuBuf],
        groups: [u32; 3],
    ) {
        let pipeline = self.pipeline(kernel, consts);
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(if params.is_empty() { &[0] } else { params }),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.raw().as_entire_binding(),
            });
        }
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pending = lock(&self.pending);
        let (encoder, count) = pending.get_or_insert_with(|| {
            (
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
                0,
            )
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.name),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        *count += 1;
        self.count(|c| &c.dispatches);
        if *count >= MAX_PENDING {
            // Submitted under the lock, so submissions keep recording order.
            let (encoder, _) = pending.take().expect("just inserted");
            self.submit(encoder);
        }
    }

    fn submit(&self, encoder: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        self.count(|c| &c.submits);
        self.queue.submit([encoder.finish()])
    }

    /// Submits pending work and waits for the device to finish it.
    pub fn sync(&self) -> Result<()> {
        let mut pending = lock(&self.pending);
        if let Some((encoder, _)) = pending.take() {
            self.submit(encoder);
        }
        drop(pending);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("gpu: waiting for the device failed: {e}"))?;
        Ok(())
    }

    /// Copies `numel` f32s (or packed halves: `half`) of `buf` to the host, as f32s,
    /// after all recorded work.
    fn read(&self, buf: &wgpu::Buffer, numel: usize, half: bool) -> Result<Vec<f32>> {
        if numel == 0 {
            return Ok(Vec::new());
        }
        let bytes = if half {
            numel.div_ceil(2) as u64 * 4
        } else {
            numel as u64 * 4
        };
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            // Submitted under the lock: work recorded by other threads after this point
            // (which may use this encoder's results) must be submitted after it.
            let mut pending = lock(&self.pending);
            let mut encoder = pending.take().map(|(e, _)| e).unwrap_or_else(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
            });
            encoder.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
            self.submit(encoder);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("gpu: waiting for the device failed: {e}"))?;
        rx.recv()
            .map_err(|_| anyhow!("gpu: readback was dropped"))?
            .map_err(|e| anyhow!("gpu: cannot map the readback buffer: {e}"))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| anyhow!("gpu: cannot map the readback buffer: {e}"))?;
            if half {
                bytemuck::cast_slice::<u8, u16>(&view)[..numel]
                    .iter()
                    .map(|&h| half::f16::from_bits(h).to_f32())
                    .collect()
            } else {
                bytemuck::cast_slice::<u8, f32>(&view).to_vec()
            }
        };
        staging.unmap();
        self.count(|c| &c.readbacks);
        Ok(out)
    }
}

/// A tensor's buffer on the device; returns to the pool when dropped.
pub(crate) struct GpuBuf {
    ctx: Arc<Context>,
    buf: Option<wgpu::Buffer>,
    numel: usize,
    pooled: bool,
    /// Packed halves rather than f32s.
    half: bool,
}

impl GpuBuf {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }

    pub fn is_half(&self) -> bool {
        self.half
    }
}

impl DeviceData for GpuBuf {
    fn read(&self) -> anyhow::Result<Vec<f32>> {
        self.ctx.read(self.raw(), self.numel, self.half)
    }

    fn numel(&self) -> usize {
        self.numel
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for GpuBuf {
    fn drop(&mut self) {
        if let (true, Some(buf)) = (self.pooled, self.buf.take()) {
            lock(&self.ctx.pool)
                .entry(buf.size())
                .or_default()
                .push(buf);
        }
    }
}
