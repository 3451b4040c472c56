//! The output of a sandboxed command, kept within a fixed number of bytes: the newest bytes
//! stay, the oldest are dropped and counted. A script that prints gigabytes costs us no more
//! memory than the cap. Pure logic.

use std::collections::VecDeque;
use std::io::Read;

/// The last `cap` bytes written, and how many came before them.
#[derive(Debug)]
pub struct OutputTail {
    bytes: VecDeque<u8>,
    cap: usize,
    dropped: u64,
}

impl OutputTail {
    pub fn new(cap: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        // Only the chunk's own tail can survive.
        let keep = &chunk[chunk.len().saturating_sub(self.cap)..];
        self.dropped += (chunk.len() - keep.len()) as u64;
        let overflow = (self.bytes.len() + keep.len()).saturating_sub(self.cap);
        self.bytes.drain(..overflow);
        self.dropped += overflow as u64;
        self.bytes.extend(keep);
    }

    /// Reads `reader` to its end into the tail.
    pub fn read_all(&mut self, mut reader: impl Read) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Bytes that were dropped to stay within the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes as text (invalid UTF-8, e.g. a character cut in two, replaced).
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut tail = OutputTail::new(10);
        tail.push(b"abc");
        tail.push(b"def");
        assert_eq!(tail.text(), "abcdef");
        assert_eq!(tail.dropped(), 0);
    }

    #[test]
    fn only_the_newest_bytes_stay_and_the_rest_is_counted() {
        let mut tail = OutputTail::new(4);
        tail.push(b"abc");
        tail.push(b"def");
        assert_eq!(tail.text(), "cdef");
        assert_eq!(tail.dropped(), 2);
        tail.push(b"0123456789");
        assert_eq!(tail.text(), "6789");
        assert_eq!(tail.dropped(), 12);
    }

    #[test]
    fn a_large_stream_stays_within_the_cap() {
        let mut tail = OutputTail::new(1000);
        let stream = std::io::repeat(b'x').take(10_000_000);
        tail.read_all(stream.chain(&b"the end"[..])).unwrap();
        assert_eq!(tail.bytes.len(), 1000);
        assert!(tail.text().ends_with("xxthe end"));
        assert_eq!(tail.dropped(), 10_000_007 - 1000);
    }

    #[test]
    fn a_cut_character_becomes_a_replacement() {
        let mut tail = OutputTail::new(3);
        tail.push("aé€".as_bytes()); // 1 + 2 + 3 bytes
        assert_eq!(tail.text(), "€");
        tail.push(b"z");
        assert_eq!(tail.text(), "\u{fffd}\u{fffd}z");
    }
}
