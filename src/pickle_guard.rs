//! A walk over a pickle's opcodes before `serde-pickle` decodes it, refusing the streams whose
//! decoding would take memory out of proportion to the file: `serde-pickle` keeps a 4 KB stack
//! for every open MARK (a 1 MB file of MARK opcodes would take 4 GB), a value on its stack for
//! every push, and a clone of the memoized value for every GET (`pytorch-reader`, which reads a
//! `torch.save` archive's `data.pkl`, is walked the same way first). The files we read need
//! little of each (a CIFAR-10 `data_batch_1`: 23 MARKs nested 2 deep, about 30,000 opcodes, one
//! GET; a `state_dict`'s `data.pkl`: a few hundred opcodes), so the bounds below are far above
//! any real file and keep the decoder's memory within a small multiple of the file's size.
//!
//! The opcodes and their argument layouts are those of Python's `pickletools` (protocols 0
//! to 5, `Lib/pickletools.py`); a FRAME's content is walked as ordinary opcodes.

/// The most MARKs open at once.
pub const MAX_MARK_DEPTH: usize = 64;
/// The most opcodes a stream may have.
pub const MAX_OPCODES: usize = 1_000_000;

/// How an opcode's argument is laid out.
enum Arg {
    None,
    /// A fixed number of bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// Text up to a line feed, this many times.
    Lines(usize),
}

/// The argument layout of `op`, `None` when it is not a pickle opcode.
fn arg(op: u8) -> Option<Arg> {
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | b'R' | b'b' | b'a' | b'e' | b'l' | b']' | b't' | b')' | b'd' | b'}'
        | b's' | b'u' | b'o' | b'Q' | 0x81 | 0x85..=0x89 | 0x8f..=0x94 | 0x97 | 0x98 => Arg::None,
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8),
        b'U' | b'C' | 0x8c | 0x8a => Arg::Counted(1),
        b'T' | b'B' | b'X' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        b'I' | b'L' | b'S' | b'V' | b'F' | b'g' | b'p' | b'P' => Arg::Lines(1),
        b'c' | b'i' => Arg::Lines(2),
        _ => return None,
    })
}

/// What GETs may copy in all, at least: a small pickle (a `data.pkl`) fetches its few memoized
/// globals many times.
pub const MIN_GET_BUDGET: usize = 1 << 20;

/// Checks that decoding `bytes` stays bounded: at most [`MAX_OPCODES`] opcodes, at most
/// [`MAX_MARK_DEPTH`] MARKs open at once, and GETs that together copy no more than the file's
/// size or [`MIN_GET_BUDGET`], whichever is larger (each GET is charged the size of the value it
/// names: at most every payload byte read before that value was memoized).
///
/// # Errors
/// Why not, with the byte offset, for a stream beyond a bound or one that is not a pickle.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let (mut at, mut ops, mut depth) = (0usize, 0usize, 0usize);
    // Payload bytes read so far, the payload of the previous opcode, and the size charged to
    // each memo entry.
    let (mut payload, mut last_payload): (usize, Option<usize>) = (0, None);
    let mut memo: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let (mut next_memo, mut copied) = (0u64, 0usize);
    let budget = bytes.len().max(MIN_GET_BUDGET);
    let truncated = |at: usize| format!("the pickle ends inside an opcode at byte {at}");
    while at < bytes.len() {
        let op = bytes[at];
        let start = at;
        at += 1;
        ops += 1;
        if ops > MAX_OPCODES {
            return Err(format!("more than {MAX_OPCODES} opcodes: far more than a CIFAR-10 batch or a state_dict has"));
        }
        let layout = arg(op).ok_or_else(|| format!("byte {op:#04x} at offset {start} is not a pickle opcode"))?;
        let mut this_payload = None;
        let mut value = &bytes[0..0];
        match layout {
            Arg::None => {}
            Arg::Fixed(n) => {
                value = bytes.get(at..at + n).ok_or_else(|| truncated(start))?;
                at += n;
            }
            Arg::Counted(n) => {
                let len = bytes.get(at..at + n).ok_or_else(|| truncated(start))?;
                let len = len.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
                at += n;
                let len = usize::try_from(len).ok().filter(|l| at.checked_add(*l).is_some_and(|end| end <= bytes.len()));
                let len = len.ok_or_else(|| truncated(start))?;
                at += len;
                this_payload = Some(len);
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let end = bytes[at..].iter().position(|&b| b == b'\n').ok_or_else(|| truncated(start))?;
                    value = &bytes[at..at + end];
                    at += end + 1;
                }
                this_payload = Some(value.len());
            }
        }
        let number = |v: &[u8]| v.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        match op {
            b'(' => {
                depth += 1;
                if depth > MAX_MARK_DEPTH {
                    return Err(format!("more than {MAX_MARK_DEPTH} MARKs open at once (at byte {start}): real files nest 2 or 3"));
                }
            }
            // The opcodes that pop the stack down to the topmost MARK.
            b'e' | b'u' | b't' | b'l' | b'd' | b'1' | 0x90 | 0x91 | b'o' | b'i' => depth = depth.saturating_sub(1),
            // FRAME: its content is more opcodes.
            0x95 => {}
            // PUT, BINPUT, LONG_BINPUT, MEMOIZE: the value on top, sized by what was read.
            b'p' | b'q' | b'r' | 0x94 => {
                let id = match op {
                    b'p' => std::str::from_utf8(value).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u64::MAX),
                    0x94 => {
                        next_memo += 1;
                        next_memo - 1
                    }
                    _ => number(value),
                };
                memo.insert(id, last_payload.unwrap_or(payload));
            }
            // GET, BINGET, LONG_BINGET: a copy of the memoized value.
            b'g' | b'h' | b'j' => {
                let id = if op == b'g' { std::str::from_utf8(value).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u64::MAX) } else { number(value) };
                copied = copied.saturating_add(memo.get(&id).copied().unwrap_or(0));
                if copied > budget {
                    return Err(format!(
                        "its GET opcodes copy more than {budget} bytes (at byte {start}): the files read here repeat almost nothing"
                    ));
                }
            }
            b'.' => return Ok(()),
            _ => {}
        }
        if let Some(n) = this_payload {
            payload += n;
        }
        // A PUT right after a payload opcode memoizes that payload; after anything else, a
        // value built of at most everything read so far.
        last_payload = if matches!(op, b'p' | b'q' | b'r' | 0x94 | 0x95) { last_payload } else { this_payload };
    }
    Ok(()) // no STOP: the decoder says what is wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_marks_is_refused_and_a_real_shape_passes() {
        let mut marks = vec![0x80, 2];
        marks.extend(std::iter::repeat_n(b'(', 1_000_000));
        let err = check(&marks).unwrap_err();
        assert!(err.contains("more than 64 MARKs open at once (at byte 66)"), "{err}");
        // {'a': [1, 2]} at protocol 2: PROTO, EMPTY_DICT, BINPUT, SHORT_BINUNICODE, BINPUT,
        // EMPTY_LIST, BINPUT, MARK, BININT1 x2, APPENDS, SETITEM, STOP.
        let ok = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.";
        assert_eq!(check(ok), Ok(()));
        // Balanced MARKs one after another never go deep.
        let mut flat = vec![0x80, 2];
        for _ in 0..1000 {
            flat.extend_from_slice(b"(1");
        }
        assert_eq!(check(&flat), Ok(()));
    }

    #[test]
    fn gets_of_a_large_value_are_bounded_by_the_file_size() {
        // BINBYTES of 100 KB, BINPUT 0, then BINGET 0 repeated: 10 copies fit the budget,
        // 2000 (200 MB from a 104 KB file) do not.
        let mut p = vec![0x80, 3, b'B'];
        p.extend_from_slice(&100_000u32.to_le_bytes());
        p.extend(std::iter::repeat_n(0u8, 100_000));
        p.extend_from_slice(b"q\x00");
        let ten = [p.clone(), b"h\x00".repeat(10), b".".to_vec()].concat();
        assert_eq!(check(&ten), Ok(()));
        p.extend(b"h\x00".repeat(2000));
        let err = check(&p).unwrap_err();
        assert!(err.contains(&format!("GET opcodes copy more than {MIN_GET_BUDGET} bytes")), "{err}");
    }

    #[test]
    fn opcodes_are_bounded_and_bad_bytes_named() {
        let nones = vec![b'N'; MAX_OPCODES + 1];
        assert!(check(&nones).unwrap_err().contains("more than 1000000 opcodes"));
        assert!(check(b"\x80\x02\xff").unwrap_err().contains("byte 0xff at offset 2 is not a pickle opcode"));
        assert!(check(b"\x80\x02X\xff\xff\x00\x00ab").unwrap_err().contains("ends inside an opcode at byte 2"));
    }
}
