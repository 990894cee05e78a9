//! The GLB container: a 12-byte header, a JSON chunk, an optional BIN chunk. Read here with
//! every length checked against the bytes present (the `gltf` crate's reader subtracts a
//! header length it has not checked); written through `gltf::Glb`.

use std::borrow::Cow;

/// The first bytes of every GLB.
pub(super) const MAGIC: &[u8; 4] = b"glTF";
const JSON: u32 = 0x4E4F_534A;
const BIN: u32 = 0x004E_4942;

/// A GLB split into its JSON text and its binary chunk.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Chunks<'a> {
    pub json: &'a [u8],
    pub bin: Option<&'a [u8]>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Splits a GLB, failing with the reason for a file that is cut short or corrupt.
pub(super) fn read(data: &[u8]) -> Result<Chunks<'_>, String> {
    if !data.starts_with(MAGIC) {
        return Err("corrupt GLB: no glTF magic".into());
    }
    if data.len() < 12 {
        return Err(format!(
            "truncated GLB: {} bytes, shorter than its 12-byte header",
            data.len()
        ));
    }
    let version = u32_at(data, 4).unwrap_or(0);
    if version != 2 {
        return Err(format!("GLB version {version} is not supported (only 2)"));
    }
    let length = u32_at(data, 8).unwrap_or(0) as usize;
    if length > data.len() {
        return Err(format!(
            "truncated GLB: its header gives {length} bytes, {} are present",
            data.len()
        ));
    }
    if length < data.len() {
        return Err(format!(
            "corrupt GLB: its header gives {length} bytes, the file has {}",
            data.len()
        ));
    }
    let mut at = 12;
    let mut json = None;
    let mut bin = None;
    while at < length {
        let (Some(size), Some(kind)) = (u32_at(data, at), u32_at(data, at + 4)) else {
            return Err(format!(
                "truncated GLB: a chunk header is cut short at byte {at}"
            ));
        };
        let start = at + 8;
        let end = start
            .checked_add(size as usize)
            .filter(|&end| end <= length)
            .ok_or_else(|| {
                format!(
                    "truncated GLB: a chunk of {size} bytes at byte {at} runs past the end ({length})"
                )
            })?;
        let body = &data[start..end];
        match (kind, json.is_none()) {
            (JSON, true) => json = Some(body),
            (_, true) => return Err("corrupt GLB: the first chunk is not JSON".into()),
            (BIN, false) if bin.is_none() => bin = Some(body),
            (JSON | BIN, false) => return Err("corrupt GLB: a second JSON or BIN chunk".into()),
            _ => {} // unknown chunks are skipped, as the specification asks
        }
        at = end;
    }
    let json = json.ok_or_else(|| "corrupt GLB: no JSON chunk".to_string())?;
    Ok(Chunks { json, bin })
}

/// A GLB of `json` and `bin` (padded to 4 bytes each), refusing one too large for its
/// 32-bit lengths.
pub(super) fn write(json: &[u8], bin: &[u8]) -> Result<Vec<u8>, String> {
    let total = 12 + 8 + json.len() as u64 + 3 + 8 + bin.len() as u64 + 3;
    if total > u64::from(u32::MAX) {
        return Err(format!(
            "the output GLB would be {total} bytes, over the 4 GiB GLB limit"
        ));
    }
    let glb = gltf::Glb {
        header: gltf::binary::Header {
            magic: *MAGIC,
            version: 2,
            length: 0, // computed by the writer
        },
        json: Cow::Borrowed(json),
        bin: (!bin.is_empty()).then_some(Cow::Borrowed(bin)),
    };
    glb.to_vec()
        .map_err(|e| format!("the GLB could not be written: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_glb_reads_back_with_aligned_chunks() {
        let glb = write(br#"{"asset":{"version":"2.0"}}"#, &[1, 2, 3, 4, 5]).expect("write");
        assert_eq!(glb.len() % 4, 0);
        let chunks = read(&glb).expect("read");
        assert_eq!(chunks.json.len() % 4, 0);
        assert!(chunks.json.starts_with(br#"{"asset""#));
        assert_eq!(chunks.bin, Some(&[1, 2, 3, 4, 5, 0, 0, 0][..]));
    }

    #[test]
    fn cut_or_lying_glbs_fail_with_the_reason() {
        let glb = write(br#"{"asset":{"version":"2.0"}}"#, &[9; 64]).expect("write");
        for cut in [0, 5, 11, 12, 20, glb.len() - 1] {
            let err = read(&glb[..cut]).expect_err("cut");
            assert!(
                err.contains("truncated") || err.contains("corrupt"),
                "{cut}: {err}"
            );
        }
        let mut lying = glb.clone();
        lying[8..12].copy_from_slice(&3u32.to_le_bytes()); // shorter than its header
        assert!(read(&lying).expect_err("length").contains("corrupt"));
        let mut huge_chunk = glb.clone();
        huge_chunk[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            read(&huge_chunk)
                .expect_err("chunk")
                .contains("runs past the end")
        );
        let mut v1 = glb;
        v1[4] = 1;
        assert!(read(&v1).expect_err("version").contains("version 1"));
    }
}
