//! GPU allocations through the CUDA driver API (cudarc, library loaded at run time).
//!
//! Raw `cuMemAlloc`/`cuMemFree` are used on purpose rather than cudarc's stream allocator:
//! with stream-ordered allocation the driver keeps freed blocks in a pool, and a "clean"
//! allocate-and-free knob must really give its memory back.

use std::sync::Arc;

use cudarc::driver::{CudaContext, DriverError, result, sys};

use super::ReferenceError;

/// Byte pattern the GPU blocks are set to (non-zero so the memset really writes).
const FILL: u8 = 0xA5;

/// Checks that the CUDA driver library can be loaded, before cudarc is touched: cudarc panics
/// when it is missing.
pub(crate) fn check_driver() -> Result<(), ReferenceError> {
    // SAFETY: only tries to dlopen the driver library by its usual names; no CUDA call.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(ReferenceError::CudaDriverMissing)
    }
}

/// A CUDA context on device 0 and the device blocks leaked into it.
#[derive(Debug)]
pub(crate) struct GpuMemory {
    ctx: Arc<CudaContext>,
    leaked: Vec<sys::CUdeviceptr>,
    leaked_bytes: u64,
}

fn cuda(what: &'static str) -> impl FnOnce(DriverError) -> ReferenceError {
    move |source| ReferenceError::Cuda { what, source }
}

impl GpuMemory {
    /// Creates the context (the driver's ~0.5 GB per process appears here, as in SGLang).
    pub(crate) fn new() -> Result<Self, ReferenceError> {
        check_driver()?;
        let ctx = CudaContext::new(0).map_err(cuda("create a CUDA context on device 0"))?;
        Ok(Self {
            ctx,
            leaked: Vec::new(),
            leaked_bytes: 0,
        })
    }

    /// Allocates `bytes` on the device, sets every byte, waits for it, and returns the pointer.
    fn alloc_set(&self, bytes: u64) -> Result<sys::CUdeviceptr, ReferenceError> {
        let len = usize::try_from(bytes).map_err(|_| ReferenceError::OutOfMemory { bytes })?;
        // The calling thread may be any tokio blocking thread: make the context current on it.
        self.ctx
            .bind_to_thread()
            .map_err(cuda("bind the CUDA context"))?;
        // SAFETY: a fresh allocation of `len` bytes, set within its bounds, in the current
        // context; freed on failure.
        unsafe {
            let ptr = result::malloc_sync(len).map_err(cuda("allocate GPU memory"))?;
            if let Err(e) = result::memset_d8_sync(ptr, FILL, len) {
                let _ = result::free_sync(ptr);
                return Err(cuda("set GPU memory")(e));
            }
            Ok(ptr)
        }
    }

    /// Allocates, sets and keeps `bytes` of device memory.
    pub(crate) fn leak(&mut self, bytes: u64) -> Result<(), ReferenceError> {
        if bytes == 0 {
            return Ok(());
        }
        let ptr = self.alloc_set(bytes)?;
        self.leaked.push(ptr);
        self.leaked_bytes += bytes;
        Ok(())
    }

    /// Allocates, sets, synchronizes and frees `bytes` of device memory (clean).
    pub(crate) fn alloc_and_free(&mut self, bytes: u64) -> Result<(), ReferenceError> {
        if bytes == 0 {
            return Ok(());
        }
        let ptr = self.alloc_set(bytes)?;
        self.ctx
            .synchronize()
            .map_err(cuda("synchronize the device"))?;
        // SAFETY: `ptr` was allocated above in this context and is freed once.
        unsafe { result::free_sync(ptr) }.map_err(cuda("free GPU memory"))
    }

    /// Device bytes leaked so far.
    pub(crate) fn leaked_bytes(&self) -> u64 {
        self.leaked_bytes
    }
}

impl Drop for GpuMemory {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        for ptr in self.leaked.drain(..) {
            // SAFETY: each pointer was allocated by `leak` in this context and is freed once.
            let _ = unsafe { result::free_sync(ptr) };
        }
    }
}
