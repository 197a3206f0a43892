//! Giving memory back to the operating system after a large request.
//!
//! glibc's allocator keeps freed heap memory for reuse, and raises its threshold for
//! serving big allocations from `mmap` each time one is freed, so after a 245 MB import
//! or a render that hit its memory budget the server's RSS stayed where the request left
//! it (58 MB before an import, 614 MB after). `malloc_trim` returns the free pages at the
//! top of each arena; it costs a walk of the arenas, so it runs only after requests that
//! moved a lot of memory.

/// Requests that moved less than this leave the allocator alone.
const TRIM_AFTER_BYTES: u64 = 8 * 1024 * 1024;

/// Returns freed memory to the operating system if a request moved `bytes` or more.
pub fn release_after(bytes: u64) {
    if bytes >= TRIM_AFTER_BYTES {
        release();
    }
}

/// Returns freed memory to the operating system.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
