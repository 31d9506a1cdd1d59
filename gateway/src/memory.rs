//! Returning startup's memory to the OS.
//!
//! A first start ingests the demo knowledge base, runs the migrations and warms the index:
//! tens of MB allocated and freed on threads that then go idle. mimalloc returns freed memory to
//! the OS lazily (after `purge_delay`, on a later allocation of the same thread), so an idle
//! server kept it: 95 MB resident after a first start, 53 MB after a restart. While starting,
//! [`StartupPurge`] has freed memory returned at once (56 MB after a first start); afterwards
//! the delay is restored, so the message path keeps reusing its memory without system calls.
//!
//! The only `unsafe` of the workspace: mimalloc's option calls are C functions with no safe
//! wrapper in the `mimalloc` crate. They take integers and touch no Rust memory.
#![allow(unsafe_code)]

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v2.3; `libmimalloc-sys` has no constant
/// for it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Immediate purging until dropped (or [`StartupPurge::finish`]ed).
#[derive(Debug)]
pub struct StartupPurge {
    #[cfg(feature = "mimalloc")]
    previous: std::ffi::c_long,
}

impl StartupPurge {
    /// Starts returning freed memory at once.
    #[must_use]
    pub fn begin() -> Self {
        #[cfg(feature = "mimalloc")]
        {
            // SAFETY: reading and setting an option is thread-safe in mimalloc; 15 is
            // `mi_option_purge_delay` in the vendored v2 header.
            let previous = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
            Self { previous }
        }
        #[cfg(not(feature = "mimalloc"))]
        Self {}
    }

    /// Restores the delay the process started with.
    pub fn finish(self) {}
}

impl Drop for StartupPurge {
    fn drop(&mut self) {
        #[cfg(feature = "mimalloc")]
        // SAFETY: as in `begin`.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, self.previous);
        }
    }
}
