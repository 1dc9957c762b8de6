//! The snapshots' writers: the text reports and the JSON documents of `CoreStats` and
//! `Fragmentation`, written by hand so that every face (CLI, C ABI) prints the same ones, whatever
//! JSON library it has or lacks. They allocate nothing of their own but the text reports' labels.

use core::fmt;

mod fragmentation;
mod stats;

/// Writes `items` separated by commas, each through `one`: the JSON writers' arrays and
/// objects.
pub(crate) fn comma_separated<W: fmt::Write, T>(
    f: &mut W,
    items: impl IntoIterator<Item = T>,
    mut one: impl FnMut(&mut W, T) -> fmt::Result,
) -> fmt::Result {
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            f.write_char(',')?;
        }
        one(f, item)?;
    }
    Ok(())
}

/// Groups digits in threes, as CPython's report does.
pub(crate) struct Thousands(pub(crate) usize);

/// A number, or JSON's `null` for `None` (written without allocating).
pub(crate) struct OrNull(pub(crate) Option<u64>);

impl fmt::Display for OrNull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("null"),
        }
    }
}

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 32];
        let mut n = self.0;
        let mut len = 0;
        loop {
            if len % 4 == 3 {
                digits[len] = b',';
                len += 1;
            }
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        digits[..len].reverse();
        let text = core::str::from_utf8(&digits[..len]).map_err(|_| fmt::Error)?;
        f.pad(text)
    }
}

#[cfg(test)]
mod tests {
    use super::Thousands;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(Thousands(0).to_string(), "0");
        assert_eq!(Thousands(999).to_string(), "999");
        assert_eq!(Thousands(1000).to_string(), "1,000");
        assert_eq!(Thousands(1_048_576).to_string(), "1,048,576");
        assert_eq!(format!("{:>8}", Thousands(1234)), "   1,234");
    }
}
