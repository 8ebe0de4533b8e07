//! Turns token bytes into whole UTF-8 pieces: a token may end inside a
//! multi-byte character, so bytes wait until the character is complete.

/// Accumulates token bytes and releases the longest valid UTF-8 prefix.
#[derive(Debug, Default)]
pub(super) struct Utf8Pieces {
    pending: Vec<u8>,
}

impl Utf8Pieces {
    /// Adds bytes; returns the text that is now complete (maybe empty).
    /// Invalid sequences (not merely incomplete ones) become U+FFFD.
    pub(super) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of a generation, lossily.
    pub(super) fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multibyte_characters_across_pushes() {
        let mut p = Utf8Pieces::default();
        let bytes = "é🐉".as_bytes();
        assert_eq!(p.push(&bytes[..1]), "");
        assert_eq!(p.push(&bytes[1..3]), "é");
        assert_eq!(p.push(&bytes[3..]), "🐉");
        assert_eq!(p.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(p.push(&[0xe2]), "");
        assert_eq!(p.finish(), "\u{fffd}");
    }
}
