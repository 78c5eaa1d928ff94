//! Minimal XDR (RFC 4506) reading and writing: 4-byte big-endian units,
//! counted arrays, padded opaque data, optional values as a bool then the
//! value. Every length read is checked against a bound before anything is
//! allocated, because the bytes come from an untrusted guest.

/// Why XDR bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended inside a value.
    #[error("XDR data ends early (at byte {0})")]
    Truncated(usize),
    /// A count or length over the format's bound.
    #[error("XDR {what} has {len} elements; at most {max} are allowed")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A bool that is neither 0 nor 1, or an unknown union arm.
    #[error("XDR {what} has invalid value {value}")]
    BadValue {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// A string that is not UTF-8.
    #[error("XDR string {0} is not UTF-8")]
    NotUtf8(&'static str),
}

/// Reads XDR units from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// An unsigned int.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or(XdrError::Truncated(self.pos))?;
        self.pos += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A bool (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadValue { what, value }),
        }
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        let padded = len.div_ceil(4) * 4;
        let b = self
            .buf
            .get(self.pos..self.pos + padded)
            .ok_or(XdrError::Truncated(self.pos))?;
        self.pos += padded;
        Ok(b[..len].to_vec())
    }

    /// A string of at most `max` bytes. A trailing NUL, which some C encoders
    /// count in, is dropped.
    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, XdrError> {
        let mut b = self.opaque(what, max)?;
        while b.last() == Some(&0) {
            b.pop();
        }
        String::from_utf8(b).map_err(|_| XdrError::NotUtf8(what))
    }

    /// A counted array of at most `max` elements.
    pub fn array<T>(
        &mut self,
        what: &'static str,
        max: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Vec<T>, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        // Each element takes at least 4 bytes: a count beyond the input is a lie.
        if len > (self.buf.len() - self.pos) / 4 {
            return Err(XdrError::Truncated(self.pos));
        }
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            v.push(item(self)?);
        }
        Ok(v)
    }

    /// An optional value (XDR pointer).
    pub fn optional<T>(
        &mut self,
        what: &'static str,
        item: impl FnOnce(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Option<T>, XdrError> {
        if self.bool(what)? {
            Ok(Some(item(self)?))
        } else {
            Ok(None)
        }
    }
}

/// Writes XDR units.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// An unsigned int.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// A bool.
    pub fn bool(&mut self, v: bool) {
        self.u32(v as u32);
    }

    /// Variable-length opaque data, padded to 4 bytes.
    pub fn opaque(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        let pad = (4 - b.len() % 4) % 4;
        self.buf.extend_from_slice(&[0; 3][..pad]);
    }

    /// A string.
    pub fn string(&mut self, s: &str) {
        self.opaque(s.as_bytes());
    }

    /// A counted array.
    pub fn array<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.u32(items.len() as u32);
        for i in items {
            item(self, i);
        }
    }

    /// An optional value.
    pub fn optional<T>(&mut self, v: Option<&T>, item: impl FnOnce(&mut Self, &T)) {
        self.bool(v.is_some());
        if let Some(v) = v {
            item(self, v);
        }
    }
}
