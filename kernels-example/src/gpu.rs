//! Everything that talks to the CUDA driver: opening device 0, loading a cubin, and launching and
//! timing `vector_add`.

use std::sync::Arc;

use cudarc::driver::sys::{self, cudaError_enum as CuErr, CUdevice_attribute, CUevent_flags};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::cubin::{Capability, Cubin};
use crate::fail::{describe, Exit, Failure};

const BLOCK_SIZE: u32 = 256;
/// Resident blocks of 256 threads per SM are at most 8 on recent GPUs; a few waves more than that
/// keeps every SM busy, and the grid-stride loop covers the rest of a large vector.
const BLOCKS_PER_SM: u32 = 32;

pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pub name: String,
    pub cc: Capability,
    sm_count: u32,
}

/// Opens device 0. Checks for the driver library first: without it cudarc panics on first use.
pub fn open() -> Result<Gpu, Failure> {
    // SAFETY: only tries to dlopen libcuda (running its initialisers) and closes it again.
    if !unsafe { sys::is_culib_present() } {
        return Err(Failure::new(
            Exit::NoGpu,
            "no NVIDIA driver found (libcuda.so could not be loaded): run this on a machine with an NVIDIA GPU, \
             e.g. through `cargo gpu remote-run`",
        ));
    }
    let count = CudaContext::device_count().map_err(|e| match e.0 {
        CuErr::CUDA_ERROR_NO_DEVICE => no_device(),
        _ => Failure::cuda(Exit::NoGpu, "initialise the CUDA driver", e),
    })?;
    if count < 1 {
        return Err(no_device());
    }
    let ctx = CudaContext::new(0).map_err(|e| Failure::cuda(Exit::NoGpu, "create a context on GPU 0", e))?;
    let query = |e| Failure::cuda(Exit::Failed, "query GPU 0", e);
    let name = ctx.name().map_err(query)?;
    let (major, minor) = ctx.compute_capability().map_err(query)?;
    let sm_count = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(query)?;
    let stream = ctx.default_stream();
    Ok(Gpu {
        ctx,
        stream,
        name,
        cc: Capability { major: major as u32, minor: minor as u32 },
        sm_count: sm_count.max(1) as u32,
    })
}

fn no_device() -> Failure {
    Failure::new(
        Exit::NoGpu,
        "the NVIDIA driver is installed but reports no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)",
    )
}

/// The CUDA version the driver supports, as `major.minor`.
fn driver_cuda_version() -> Option<String> {
    let mut version = 0;
    // SAFETY: writes one int; the library is known to be loaded by the time a cubin is loaded.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result().ok()?;
    Some(format!("{}.{}", version / 1000, version % 1000 / 10))
}

impl Gpu {
    /// Loads `cubin` and looks up `function` in it, explaining the driver's refusals.
    pub fn load(&self, cubin: &Cubin, function: &str) -> Result<CudaFunction, Failure> {
        let file = cubin.file_name();
        let bytes = std::fs::read(&cubin.path)
            .map_err(|e| Failure::new(Exit::NoKernel, format!("failed to read {}: {e}", cubin.path.display())))?;
        let module = self.ctx.load_module(Ptx::from_binary(bytes)).map_err(|e| self.load_error(cubin, e))?;
        module
            .load_function(function)
            .map_err(|e| Failure::cuda(Exit::NoKernel, &format!("find {function} in {file}"), e))
    }

    fn load_error(&self, cubin: &Cubin, err: DriverError) -> Failure {
        let file = cubin.file_name();
        let why = match err.0 {
            CuErr::CUDA_ERROR_NO_BINARY_FOR_GPU => {
                let mut why = format!(
                    "{file} was built for {}, this GPU is {} (compute capability {})",
                    cubin.target,
                    self.cc.sm(),
                    self.cc
                );
                // Only a cubin whose name says it runs here gets this far, so the name is wrong.
                if cubin.target.runs_on(self.cc) {
                    why.push_str(", but its contents are for another GPU: the file is misnamed or stale, rebuild it");
                }
                why
            }
            CuErr::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
            | CuErr::CUDA_ERROR_INVALID_PTX
            | CuErr::CUDA_ERROR_INVALID_IMAGE
            | CuErr::CUDA_ERROR_JIT_COMPILER_NOT_FOUND => {
                let driver = driver_cuda_version().map(|v| format!(" (it supports CUDA {v})")).unwrap_or_default();
                format!(
                    "{file} came from a CUDA toolkit newer than this driver{driver}: build with an nvcc no newer \
                     than the driver, or update the driver"
                )
            }
            _ => String::from("the driver refused it"),
        };
        Failure::new(Exit::NoKernel, format!("failed to load {file}: {why}; {}", describe(err)))
    }

    /// Runs `c = a + b` once to warm up, then `iters` timed times. Returns `c` (from the last
    /// launch) and each launch's time in microseconds, measured with CUDA events on the stream.
    pub fn vector_add(
        &self,
        function: &CudaFunction,
        a: &[f32],
        b: &[f32],
        iters: usize,
    ) -> Result<(Vec<f32>, Vec<f64>), Failure> {
        let cuda = |what: &'static str| move |e| Failure::cuda(Exit::Failed, what, e);
        let n = a.len();
        let a_dev = self.stream.clone_htod(a).map_err(cuda("copy a to the GPU"))?;
        let b_dev = self.stream.clone_htod(b).map_err(cuda("copy b to the GPU"))?;
        // NaN until written, so an element the kernel skips cannot pass the check by luck.
        let mut c_dev = self.stream.clone_htod(&vec![f32::NAN; n]).map_err(cuda("initialise c on the GPU"))?;
        let n_arg = n as u64;
        let cfg = self.launch_config(n);

        let launch = |c: &mut _| {
            let mut builder = self.stream.launch_builder(function);
            builder.arg(&a_dev).arg(&b_dev).arg(c).arg(&n_arg);
            // SAFETY: the arguments match `vector_add(const float*, const float*, float*,
            // unsigned long long)`, and all three buffers hold n floats.
            unsafe { builder.launch(cfg) }.map(drop)
        };

        launch(&mut c_dev).map_err(cuda("launch vector_add"))?;
        self.stream.synchronize().map_err(cuda("run vector_add (warm-up launch)"))?;

        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let mut events = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = self.stream.record_event(timing).map_err(cuda("record a CUDA event"))?;
            launch(&mut c_dev).map_err(cuda("launch vector_add"))?;
            let end = self.stream.record_event(timing).map_err(cuda("record a CUDA event"))?;
            events.push((start, end));
        }
        self.stream.synchronize().map_err(cuda("run vector_add"))?;
        let times_us = events
            .iter()
            .map(|(start, end)| start.elapsed_ms(end).map(|ms| f64::from(ms) * 1000.0))
            .collect::<Result<Vec<f64>, _>>()
            .map_err(cuda("read the CUDA event timer"))?;

        let c = self.stream.clone_dtoh(&c_dev).map_err(cuda("copy c from the GPU"))?;
        Ok((c, times_us))
    }

    fn launch_config(&self, n: usize) -> LaunchConfig {
        let needed = n.div_ceil(BLOCK_SIZE as usize);
        let cap = self.sm_count.saturating_mul(BLOCKS_PER_SM) as usize;
        LaunchConfig {
            grid_dim: (needed.min(cap).max(1) as u32, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}
