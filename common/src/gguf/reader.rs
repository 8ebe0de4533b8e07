//! A buffered little-endian reader over a GGUF header that turns every short read into
//! a typed error naming the file, instead of an `UnexpectedEof`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::ModelFileError;

/// Reads the header region of a file, tracking the position so errors can say where.
pub(super) struct HeaderReader<'p> {
    inner: BufReader<File>,
    pos: u64,
    size: u64,
    path: &'p Path,
}

impl<'p> HeaderReader<'p> {
    /// Wraps an open file of `size` bytes, positioned at its start.
    pub(super) fn new(file: File, size: u64, path: &'p Path) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, file),
            pos: 0,
            size,
            path,
        }
    }

    /// Current offset from the start of the file.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    /// Size of the whole file; claims larger than this are malformed, not truncated.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    fn remaining(&self) -> u64 {
        self.size - self.pos
    }

    /// A [`ModelFileError::Malformed`] at the current position.
    pub(super) fn malformed(&self, reason: impl Into<String>) -> ModelFileError {
        ModelFileError::Malformed {
            path: self.path.to_owned(),
            offset: self.pos,
            reason: reason.into(),
        }
    }

    /// Fails with `Truncated` unless `n` more bytes exist.
    fn need(&self, n: u64) -> Result<(), ModelFileError> {
        if n > self.remaining() {
            return Err(ModelFileError::Truncated {
                path: self.path.to_owned(),
                expected: self.pos.saturating_add(n),
                actual: self.size,
            });
        }
        Ok(())
    }

    fn io_error(&self, source: std::io::Error) -> ModelFileError {
        ModelFileError::Unreadable {
            path: self.path.to_owned(),
            source,
        }
    }

    /// Reads exactly `N` bytes.
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelFileError> {
        self.need(N as u64)?;
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.io_error(e))?;
        self.pos += N as u64;
        Ok(buf)
    }

    /// Reads a little-endian `u32`.
    pub(super) fn u32(&mut self) -> Result<u32, ModelFileError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub(super) fn u64(&mut self) -> Result<u64, ModelFileError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Skips `n` bytes without reading them into memory.
    pub(super) fn skip(&mut self, n: u64) -> Result<(), ModelFileError> {
        self.need(n)?;
        let mut left = n;
        // seek_relative keeps the buffer when the target is inside it.
        while left > 0 {
            let step = left.min(i64::MAX as u64);
            self.inner
                .seek_relative(step as i64)
                .map_err(|e| self.io_error(e))?;
            left -= step;
        }
        self.pos += n;
        Ok(())
    }

    /// Reads a string's length prefix, rejecting lengths no file of this size could hold.
    fn string_len(&mut self, what: &str) -> Result<u64, ModelFileError> {
        let len = self.u64()?;
        if len > self.size {
            return Err(self.malformed(format!(
                "{what} claims a length of {len} bytes, longer than the whole file ({} bytes)",
                self.size
            )));
        }
        Ok(len)
    }

    /// Reads a GGUF string (u64 length + bytes); invalid UTF-8 is replaced, not fatal.
    pub(super) fn string(&mut self, what: &str) -> Result<String, ModelFileError> {
        let len = self.string_len(what)?;
        self.need(len)?;
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.io_error(e))?;
        self.pos += len;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Skips a GGUF string, e.g. one of the 262k vocabulary entries, without allocating.
    pub(super) fn skip_string(&mut self, what: &str) -> Result<(), ModelFileError> {
        let len = self.string_len(what)?;
        self.skip(len)
    }
}
