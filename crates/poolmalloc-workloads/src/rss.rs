//! The process's resident set size, from `/proc/self/statm` (Linux), read without allocating:
//! `memory` polls it while it waits for an allocator to give its memory back, and a poll that
//! called malloc could be what makes the allocator give it back.

/// Resident bytes now, or 0 where `/proc` is missing. Allocates nothing: the file is read with
/// `open`, `read` and `close` into a buffer on the stack and parsed by hand.
pub fn rss_bytes() -> usize {
    resident_pages().map_or(0, |pages| pages * page_size())
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

/// The second field of `/proc/self/statm`: resident pages.
fn resident_pages() -> Option<usize> {
    // statm is seven numbers of at most 20 digits each.
    let mut buf = [0u8; 256];
    // SAFETY: the path is a NUL-terminated C string; `open` returns a descriptor this function
    // owns, or -1.
    let fd = unsafe {
        libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let rest = &mut buf[len..];
        // SAFETY: `fd` is open; `read` writes at most `rest.len()` bytes into `rest`, which this
        // function owns.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break,
            n if n > 0 => len += n as usize,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    // SAFETY: `fd` was opened above and is closed once, here.
    unsafe { libc::close(fd) };
    second_number(&buf[..len])
}

/// The second of the whitespace-separated decimal numbers in `text`.
fn second_number(text: &[u8]) -> Option<usize> {
    let field = text
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
        .nth(1)?;
    field.iter().try_fold(0usize, |n, &b| {
        let digit = b.is_ascii_digit().then(|| usize::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// A `kB` field of another process's `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes; this
/// one allocates.
pub fn status_bytes(pid: u32, field: &str) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Sets the process's peak resident set (`VmHWM`) to its resident set now (Linux 4.0 on:
/// `/proc/self/clear_refs`, `5`); false where that cannot be done.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set, in bytes: since it started or the last `reset_peak`.
pub fn peak_bytes() -> Option<usize> {
    status_bytes(std::process::id(), "VmHWM")
}

pub const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::{rss_bytes, second_number, status_bytes};

    #[test]
    fn rss_agrees_with_the_status_file() {
        let me = std::process::id();
        let (a, b) = (rss_bytes(), status_bytes(me, "VmRSS").unwrap());
        assert!(a > 0);
        assert!(a.abs_diff(b) <= 4 << 20, "statm {a}, status {b}");
        assert!(status_bytes(me, "VmHWM").unwrap() >= b);
        assert_eq!(status_bytes(me, "VmNothing"), None);
        assert_eq!(status_bytes(u32::MAX, "VmRSS"), None);
    }

    #[test]
    fn rss_grows_when_pages_are_touched() {
        let before = rss_bytes();
        assert!(before > 0);
        let touched = vec![1u8; 64 << 20];
        let during = rss_bytes();
        assert!(during >= before + (48 << 20), "{before} -> {during}");
        drop(touched);
    }

    #[test]
    fn statm_is_parsed_by_hand() {
        assert_eq!(second_number(b"5123 1234 321 8 0 900 0\n"), Some(1234));
        assert_eq!(second_number(b"  7   42"), Some(42));
        assert_eq!(second_number(b"5123"), None);
        assert_eq!(second_number(b"1 2x 3"), None);
        assert_eq!(second_number(b"1 99999999999999999999999 3"), None);
    }
}
