//! The GPU side of the reference server, whatever the build: with the `cuda` feature it is
//! [`super::cuda`]; without it every GPU knob is refused at startup, so the stub below is never
//! reached at run time.

#[cfg(feature = "cuda")]
pub(crate) use super::cuda::{GpuMemory, check_driver};

#[cfg(not(feature = "cuda"))]
pub(crate) use stub::{GpuMemory, check_driver};

#[cfg(not(feature = "cuda"))]
mod stub {
    use crate::reference::ReferenceError;

    /// Refuses: this build cannot reach a GPU.
    pub(crate) fn check_driver() -> Result<(), ReferenceError> {
        Err(ReferenceError::NoGpuSupport)
    }

    /// Stand-in with the same methods as the CUDA version; it cannot be created.
    #[derive(Debug)]
    pub(crate) struct GpuMemory {
        _unconstructible: (),
    }

    impl GpuMemory {
        pub(crate) fn new() -> Result<Self, ReferenceError> {
            Err(ReferenceError::NoGpuSupport)
        }

        pub(crate) fn leak(&mut self, _bytes: u64) -> Result<(), ReferenceError> {
            Err(ReferenceError::NoGpuSupport)
        }

        pub(crate) fn alloc_and_free(&mut self, _bytes: u64) -> Result<(), ReferenceError> {
            Err(ReferenceError::NoGpuSupport)
        }

        pub(crate) fn leaked_bytes(&self) -> u64 {
            0
        }
    }
}
