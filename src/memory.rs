//! How the process holds its memory: no transparent huge pages.
//!
//! The service's allocator is mimalloc (src/main.rs). mimalloc reserves its heap as one large
//! arena and advises the kernel to back it with transparent huge pages (`MADV_HUGEPAGE`, its
//! `allow_thp` default). Under Linux's usual `madvise` setting that advice is taken: the kernel's
//! khugepaged thread, which scans processes slowly, later collapses each 2 MiB range of the
//! arena that has any page in use into one huge page, filling the rest of the range. Measured in
//! the benchmark's 15-minute soak (issue 8): the resident set sat at 75 to 105 MiB, then about
//! eleven minutes after the service started it rose to 141 to 151 MiB over three minutes with
//! hardly a page fault (100 faults for 40 MiB), all of it `AnonHugePages` in mimalloc's arena.
//! Nothing had been allocated: sparse memory had been made resident. For a heap of about 100 MiB
//! of small, short-lived allocations huge pages save little, and a resident set that grows by
//! half with no allocation behind it makes the memory a service needs impossible to read or
//! plan for. So the process asks the kernel for none, before it starts any thread.
//!
//! mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`) is read from the environment when the process
//! loads, before `main` could set it, and an operator could not be relied on to set it; the
//! kernel's per-process switch (`prctl(PR_SET_THP_DISABLE)`) covers memory already mapped too.

/// Asks the kernel never to back this process's memory with transparent huge pages (and so
/// khugepaged never to collapse its ranges). Call first thing in `main`: children inherit it.
/// An error (a kernel without the switch) leaves memory as it was; it is reported, not fatal.
pub fn no_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it changes only a
        // flag of this process's memory map. prctl is variadic and the kernel reads each argument
        // as an unsigned long (and refuses non-zero unused ones): they are passed at that width.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the kernel may back this process's memory with transparent huge pages (`None` when
    /// it cannot say).
    #[cfg(target_os = "linux")]
    fn transparent_huge_pages_allowed() -> Option<bool> {
        // SAFETY: PR_GET_THP_DISABLE takes no arguments beyond the option and reads a flag.
        let unused: libc::c_ulong = 0;
        match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, unused, unused, unused, unused) } {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn after_the_call_the_kernel_backs_nothing_with_huge_pages() {
        no_transparent_huge_pages().unwrap();
        assert_eq!(transparent_huge_pages_allowed(), Some(false));
        // The kernel's own view, where it reports one (Linux 6.x: "THP_enabled").
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert!(line.ends_with('0'), "{line}");
        }
    }
}
