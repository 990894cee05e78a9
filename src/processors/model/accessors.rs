//! Accessor data: where an accessor's elements lie (every offset and length checked against
//! the bytes present, in 64-bit arithmetic, so a lying count or offset is a reason, never a
//! panic or a large allocation), reading them, and writing them back in place.

use gltf::json::accessor::{ComponentType, Type};
use gltf::json::validation::Checked;

use super::document::Model;

/// The bytes one element takes: columns of matrices with 1- or 2-byte components are
/// padded to 4 bytes, as the specification lays them out.
pub(super) fn element_size(component: ComponentType, ty: Type) -> usize {
    let c = component.size();
    match (ty, c) {
        (Type::Mat2, 1) => 8,
        (Type::Mat3, 1) => 12,
        (Type::Mat3, 2) => 24,
        _ => c * ty.multiplicity(),
    }
}

/// Where an accessor's elements are: in `buffer`, the first at `start`, each `size` bytes,
/// `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub buffer: usize,
    pub start: usize,
    pub stride: usize,
    pub size: usize,
    pub count: usize,
    pub component: ComponentType,
    pub ty: Type,
    pub normalized: bool,
}

impl Span {
    /// The bytes from the first element's start to the last one's end.
    fn len(&self) -> usize {
        match self.count {
            0 => 0,
            n => (n - 1) * self.stride + self.size,
        }
    }
}

/// The buffer of buffer view `view` and its byte range there, checked against the buffer's
/// `byteLength` and the bytes present.
pub(super) fn view_range(
    model: &Model,
    view: usize,
) -> Result<(usize, std::ops::Range<usize>), String> {
    let v = model
        .root
        .buffer_views
        .get(view)
        .ok_or_else(|| format!("bufferViews[{view}] does not exist"))?;
    let buffer = v.buffer.value();
    let declared = model
        .root
        .buffers
        .get(buffer)
        .ok_or_else(|| format!("bufferViews[{view}].buffer: buffers[{buffer}] does not exist"))?
        .byte_length
        .0;
    let present = model.buffers.get(buffer).map_or(0, |b| b.len() as u64);
    let start = v.byte_offset.map_or(0, |o| o.0);
    let end = start.saturating_add(v.byte_length.0);
    if end > declared {
        return Err(format!(
            "bufferViews[{view}] (bytes {start}..{end}) runs past the end of buffers[{buffer}] ({declared} bytes)"
        ));
    }
    if end > present {
        return Err(format!(
            "bufferViews[{view}] (bytes {start}..{end}) runs past the {present} bytes of buffers[{buffer}] present"
        ));
    }
    // Both fit in the buffer present, hence in usize.
    Ok((buffer, start as usize..end as usize))
}

/// Where accessor `index`'s elements are, every range checked. An accessor without a buffer
/// view (all zeros, or sparse only) has no span.
pub(super) fn span(model: &Model, index: usize) -> Result<Span, String> {
    let a = model
        .root
        .accessors
        .get(index)
        .ok_or_else(|| format!("accessors[{index}] does not exist"))?;
    let (Checked::Valid(component), Checked::Valid(ty)) = (&a.component_type, &a.type_) else {
        return Err(format!(
            "accessors[{index}] has an invalid componentType or type"
        ));
    };
    let component = component.0;
    let ty = *ty;
    let view = a
        .buffer_view
        .ok_or_else(|| {
            format!(
                "accessors[{index}] has no bufferView (all zeros), which this processor does not read"
            )
        })?
        .value();
    let (buffer, range) = view_range(model, view)?;
    let size = element_size(component, ty);
    let stride = match model
        .root
        .buffer_views
        .get(view)
        .and_then(|v| v.byte_stride)
    {
        Some(s) if s.0 < size => {
            return Err(format!(
                "accessors[{index}]: bufferViews[{view}].byteStride {} is less than its {size}-byte elements",
                s.0
            ));
        }
        Some(s) => s.0,
        None => size,
    };
    let offset = a.byte_offset.map_or(0, |o| o.0);
    let count = a.count.0;
    let needed = match count {
        0 => Some(offset),
        n => (n - 1)
            .checked_mul(stride as u64)
            .and_then(|b| b.checked_add(size as u64))
            .and_then(|b| b.checked_add(offset)),
    };
    let view_len = range.len() as u64;
    match needed {
        Some(needed) if needed <= view_len => {}
        _ => {
            return Err(format!(
                "accessors[{index}] ({count} elements of {size} bytes from byte {offset}) runs past the end of bufferViews[{view}] ({view_len} bytes)"
            ));
        }
    }
    Ok(Span {
        buffer,
        start: range.start + offset as usize,
        stride,
        size,
        count: count as usize,
        component,
        ty,
        normalized: a.normalized,
    })
}

/// The byte range of a sparse accessor's indices and values, checked against their views.
pub(super) fn check_sparse(model: &Model, index: usize) -> Result<(), String> {
    let Some(sparse) = model
        .root
        .accessors
        .get(index)
        .and_then(|a| a.sparse.as_ref())
    else {
        return Ok(());
    };
    let a = &model.root.accessors[index];
    if sparse.count.0 > a.count.0 {
        return Err(format!(
            "accessors[{index}].sparse.count is more than the accessor's count"
        ));
    }
    let index_size = match &sparse.indices.component_type {
        Checked::Valid(c) => c.0.size() as u64,
        Checked::Invalid => {
            return Err(format!(
                "accessors[{index}].sparse.indices has an invalid componentType"
            ));
        }
    };
    let value_size = match (&a.component_type, &a.type_) {
        (Checked::Valid(c), Checked::Valid(t)) => element_size(c.0, *t) as u64,
        _ => {
            return Err(format!(
                "accessors[{index}] has an invalid componentType or type"
            ));
        }
    };
    for (what, view, offset, size) in [
        (
            "indices",
            sparse.indices.buffer_view.value(),
            sparse.indices.byte_offset.0,
            index_size,
        ),
        (
            "values",
            sparse.values.buffer_view.value(),
            sparse.values.byte_offset.0,
            value_size,
        ),
    ] {
        let (_, range) = view_range(model, view)?;
        let end = sparse
            .count
            .0
            .checked_mul(size)
            .and_then(|n| n.checked_add(offset));
        if end.is_none_or(|end| end > range.len() as u64) {
            return Err(format!(
                "accessors[{index}].sparse.{what} runs past the end of bufferViews[{view}]"
            ));
        }
    }
    Ok(())
}

/// The span of an accessor whose data this processor reads: plain (not sparse), with data.
pub(super) fn plain_span(model: &Model, index: usize) -> Result<Span, String> {
    if model
        .root
        .accessors
        .get(index)
        .is_some_and(|a| a.sparse.is_some())
    {
        return Err(format!(
            "accessors[{index}] is sparse, which is not supported here"
        ));
    }
    span(model, index)
}

/// Whether accessor `index` has data of its own: a buffer view, and no sparse part.
pub(super) fn has_plain_data(model: &Model, index: usize) -> bool {
    model
        .root
        .accessors
        .get(index)
        .is_some_and(|a| a.buffer_view.is_some() && a.sparse.is_none())
}

/// The bytes from `span`'s first element to its last.
fn region<'a>(model: &'a Model, span: &Span) -> Result<&'a [u8], String> {
    model
        .buffers
        .get(span.buffer)
        .and_then(|b| b.get(span.start..span.start + span.len()))
        .ok_or_else(|| "accessor data out of range".to_string())
}

/// Each element's bytes, in order.
pub(super) fn elements<'a>(
    model: &'a Model,
    span: &Span,
) -> Result<impl Iterator<Item = &'a [u8]> + 'a, String> {
    let region = region(model, span)?;
    let (stride, size) = (span.stride, span.size);
    Ok((0..span.count).map(move |i| &region[i * stride..i * stride + size]))
}

/// Accessor `index` as triangle or line indices.
pub(super) fn read_indices(model: &Model, index: usize) -> Result<Vec<u32>, String> {
    let span = plain_span(model, index)?;
    if span.ty != Type::Scalar {
        return Err(format!(
            "accessors[{index}] holds indices but is not SCALAR"
        ));
    }
    let read: fn(&[u8]) -> u32 = match span.component {
        ComponentType::U8 => |b| u32::from(b[0]),
        ComponentType::U16 => |b| u32::from(u16::from_le_bytes([b[0], b[1]])),
        ComponentType::U32 => |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        other => {
            return Err(format!(
                "accessors[{index}] holds indices as {other:?}, not an unsigned type"
            ));
        }
    };
    Ok(elements(model, &span)?.map(read).collect())
}

/// One component as a number (normalized integers scaled as the specification says).
fn component(b: &[u8], component: ComponentType, normalized: bool) -> f32 {
    let (value, scale) = match component {
        ComponentType::F32 => return f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        ComponentType::I8 => (f32::from(b[0] as i8), 127.0),
        ComponentType::U8 => (f32::from(b[0]), 255.0),
        ComponentType::I16 => (f32::from(i16::from_le_bytes([b[0], b[1]])), 32767.0),
        ComponentType::U16 => (f32::from(u16::from_le_bytes([b[0], b[1]])), 65535.0),
        ComponentType::U32 => (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32, 1.0),
    };
    if normalized {
        (value / scale).max(-1.0)
    } else {
        value
    }
}

/// Accessor `index` as 3-vectors (positions: floats, or quantized integers).
pub(super) fn read_vec3(model: &Model, index: usize) -> Result<Vec<[f32; 3]>, String> {
    let span = plain_span(model, index)?;
    if span.ty != Type::Vec3 {
        return Err(format!(
            "accessors[{index}] is read as positions but is not VEC3"
        ));
    }
    let c = span.component.size();
    let (kind, normalized) = (span.component, span.normalized);
    Ok(elements(model, &span)?
        .map(|e| {
            [
                component(&e[0..c], kind, normalized),
                component(&e[c..2 * c], kind, normalized),
                component(&e[2 * c..3 * c], kind, normalized),
            ]
        })
        .collect())
}

/// Each element of `span` copied into one packed run (`count * size` bytes).
pub(super) fn read_packed(model: &Model, span: &Span) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(span.count * span.size);
    for e in elements(model, span)? {
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Writes `packed` (as [`read_packed`] gives it) back over `span`'s elements.
pub(super) fn write_packed(model: &mut Model, span: &Span, packed: &[u8]) -> Result<(), String> {
    if packed.len() != span.count * span.size {
        return Err("packed data of the wrong length".into());
    }
    let region = model
        .buffers
        .get_mut(span.buffer)
        .and_then(|b| b.get_mut(span.start..span.start + span.len()))
        .ok_or_else(|| "accessor data out of range".to_string())?;
    for (i, e) in packed.chunks_exact(span.size.max(1)).enumerate() {
        region[i * span.stride..i * span.stride + span.size].copy_from_slice(e);
    }
    Ok(())
}

/// `indices` in `component`'s little-endian layout; `None` if one does not fit.
pub(super) fn encode_indices(indices: &[u32], component: ComponentType) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(indices.len() * component.size());
    for &i in indices {
        match component {
            ComponentType::U8 => out.push(u8::try_from(i).ok()?),
            ComponentType::U16 => out.extend_from_slice(&u16::try_from(i).ok()?.to_le_bytes()),
            ComponentType::U32 => out.extend_from_slice(&i.to_le_bytes()),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::model::document::tests::model_with;
    use serde_json::json;

    fn one_accessor(accessor: serde_json::Value, view: serde_json::Value, bytes: usize) -> Model {
        model_with(
            json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": bytes}],
                "bufferViews": [view],
                "accessors": [accessor],
            }),
            vec![vec![7; bytes]],
        )
    }

    #[test]
    fn element_sizes_pad_small_matrix_columns() {
        assert_eq!(element_size(ComponentType::F32, Type::Vec3), 12);
        assert_eq!(element_size(ComponentType::U8, Type::Mat2), 8);
        assert_eq!(element_size(ComponentType::I16, Type::Mat3), 24);
        assert_eq!(element_size(ComponentType::U16, Type::Mat4), 32);
    }

    #[test]
    fn an_accessor_that_fits_reads_with_its_stride() {
        let m = one_accessor(
            json!({"bufferView": 0, "byteOffset": 4, "count": 3, "componentType": 5123, "type": "SCALAR"}),
            json!({"buffer": 0, "byteOffset": 8, "byteLength": 16, "byteStride": 4}),
            24,
        );
        let s = span(&m, 0).expect("fits");
        assert_eq!((s.start, s.stride, s.size, s.count), (12, 4, 2, 3));
        assert_eq!(read_indices(&m, 0).expect("read"), vec![0x0707; 3]);
    }

    #[test]
    fn lying_counts_offsets_and_lengths_are_reasons_not_panics() {
        let cases = [
            // count past the view
            (
                json!({"bufferView": 0, "count": 5, "componentType": 5126, "type": "VEC3"}),
                json!({"buffer": 0, "byteLength": 48}),
                48,
                "runs past the end of bufferViews[0]",
            ),
            // count near u64::MAX
            (
                json!({"bufferView": 0, "count": u64::MAX, "componentType": 5126, "type": "VEC3"}),
                json!({"buffer": 0, "byteLength": 48}),
                48,
                "runs past the end of bufferViews[0]",
            ),
            // offset near u64::MAX
            (
                json!({"bufferView": 0, "byteOffset": u64::MAX - 2, "count": 1, "componentType": 5126, "type": "SCALAR"}),
                json!({"buffer": 0, "byteLength": 48}),
                48,
                "runs past the end of bufferViews[0]",
            ),
            // view past its buffer
            (
                json!({"bufferView": 0, "count": 1, "componentType": 5126, "type": "SCALAR"}),
                json!({"buffer": 0, "byteOffset": 40, "byteLength": 16}),
                48,
                "runs past the end of buffers[0]",
            ),
            // view offset + length overflowing
            (
                json!({"bufferView": 0, "count": 1, "componentType": 5126, "type": "SCALAR"}),
                json!({"buffer": 0, "byteOffset": u64::MAX, "byteLength": 16}),
                48,
                "runs past the end of buffers[0]",
            ),
            // stride shorter than an element
            (
                json!({"bufferView": 0, "count": 2, "componentType": 5126, "type": "VEC3"}),
                json!({"buffer": 0, "byteLength": 48, "byteStride": 8}),
                48,
                "byteStride 8",
            ),
        ];
        for (accessor, view, bytes, says) in cases {
            let m = one_accessor(accessor.clone(), view, bytes);
            let err = span(&m, 0).expect_err("refused");
            assert!(err.contains(says), "{accessor}: {err}");
        }
        // A buffer that claims more bytes than are present.
        let mut m = one_accessor(
            json!({"bufferView": 0, "count": 1, "componentType": 5126, "type": "SCALAR"}),
            json!({"buffer": 0, "byteLength": 48}),
            48,
        );
        m.buffers[0].truncate(10);
        assert!(
            span(&m, 0)
                .expect_err("short")
                .contains("10 bytes of buffers[0] present")
        );
    }

    #[test]
    fn packed_elements_write_back_in_place() {
        let mut m = one_accessor(
            json!({"bufferView": 0, "count": 2, "componentType": 5121, "type": "VEC2"}),
            json!({"buffer": 0, "byteLength": 8, "byteStride": 4}),
            8,
        );
        let s = span(&m, 0).expect("fits");
        write_packed(&mut m, &s, &[1, 2, 3, 4]).expect("write");
        assert_eq!(m.buffers[0], vec![1, 2, 7, 7, 3, 4, 7, 7]);
        assert_eq!(read_packed(&m, &s).expect("read"), vec![1, 2, 3, 4]);
        assert_eq!(encode_indices(&[1, 300], ComponentType::U8), None);
        assert_eq!(
            encode_indices(&[1, 300], ComponentType::U16),
            Some(vec![1, 0, 44, 1])
        );
    }
}
