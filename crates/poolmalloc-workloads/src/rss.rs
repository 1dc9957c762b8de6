//! The process's resident set size, from `/proc/self/statm` (Linux).

/// Resident bytes now, or 0 where `/proc` is missing.
pub fn rss_bytes() -> usize {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).unwrap_or(4096)
}

pub const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::rss_bytes;

    #[test]
    fn rss_grows_when_pages_are_touched() {
        let before = rss_bytes();
        assert!(before > 0);
        let touched = vec![1u8; 64 << 20];
        let during = rss_bytes();
        assert!(during >= before + (48 << 20), "{before} -> {during}");
        drop(touched);
    }
}
