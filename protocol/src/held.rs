//! [`HeldInput`]: client bytes a session keeps between calls (a partial
//! frame or packet, or what was pipelined behind the Hello or CONNECT while
//! the caller decides), for the v1 and the MQTT server sessions.
//! Eight bytes when there are none: the buffer lives behind a pointer,
//! allocated when bytes must be kept and freed as soon as they are taken,
//! so an idle connection pays one null pointer instead of an empty `Vec`'s
//! 24 bytes.

/// The kept bytes, boxed so that "none" is a null pointer.
#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
}

/// Client bytes kept for a later call. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct HeldInput {
    buffer: Option<Box<Buffer>>,
}

impl HeldInput {
    /// How many bytes are kept.
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kept bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], |b| b.bytes.as_slice())
    }

    /// Appends `data`, allocating the buffer if there was none.
    pub(crate) fn extend(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.vec_mut().extend_from_slice(data);
        }
    }

    /// Makes room for exactly `additional` more bytes.
    pub(crate) fn reserve_exact(&mut self, additional: usize) {
        if additional > 0 {
            self.vec_mut().reserve_exact(additional);
        }
    }

    /// Replaces what is kept with a copy of `data` (exactly its size).
    pub(crate) fn set(&mut self, data: &[u8]) {
        self.buffer = (!data.is_empty()).then(|| {
            Box::new(Buffer {
                bytes: data.to_vec(),
            })
        });
    }

    /// Takes the kept bytes out, leaving nothing (and no allocation) behind.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.buffer.take().map(|b| b.bytes).unwrap_or_default()
    }

    /// Whether a buffer is allocated (only while bytes are kept).
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.buffer.is_some()
    }

    /// Drops what is kept.
    pub(crate) fn clear(&mut self) {
        self.buffer = None;
    }

    fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self
            .buffer
            .get_or_insert_with(|| Box::new(Buffer { bytes: Vec::new() }))
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::HeldInput;

    #[test]
    fn nothing_held_is_one_null_pointer() {
        assert_eq!(std::mem::size_of::<HeldInput>(), 8);
        let mut h = HeldInput::default();
        h.extend(&[]);
        h.reserve_exact(0);
        assert!(h.buffer.is_none());
        h.extend(b"ab");
        h.reserve_exact(2);
        h.extend(b"cd");
        assert_eq!(h.as_slice(), b"abcd");
        assert_eq!(h.take(), b"abcd");
        assert!(h.buffer.is_none() && h.is_empty());
        h.set(b"xyz");
        assert_eq!((h.len(), h.as_slice()), (3, &b"xyz"[..]));
        h.set(b"");
        assert!(h.buffer.is_none());
        h.set(b"q");
        h.clear();
        assert!(h.buffer.is_none());
    }
}
