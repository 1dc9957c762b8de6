//! The process's peak resident set (`VmHWM`) follows a touched mapping and resets: a test
//! binary of its own, since the peak is the whole process's and other tests running beside it
//! in one process move it.

use poolmalloc_workloads::rss::{peak_bytes, reset_peak};

#[test]
fn the_peak_follows_a_touched_mapping_and_resets() {
    const BYTES: usize = 64 << 20;
    if !reset_peak() {
        return; // no clear_refs (not Linux 4.0+): nothing to check
    }
    let before = peak_bytes().unwrap();
    // SAFETY: a private anonymous mapping of BYTES, written within its bounds, then unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::write_bytes(p.cast::<u8>(), 1, BYTES);
        let peak = peak_bytes().unwrap();
        assert!(peak >= before + BYTES - (4 << 20), "{peak} after {before}");
        libc::munmap(p, BYTES);
    }
    assert!(reset_peak());
    let after = peak_bytes().unwrap();
    assert!(
        after + BYTES / 2 < before + BYTES,
        "{after}: the peak was not reset"
    );
}
