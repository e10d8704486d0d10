//! Functions whose result is a piece of their text argument (`SPLIT_INDEX`, `REGEXP_EXTRACT`)
//! return it as a string view into the argument's own buffers: whatever the pieces' lengths,
//! no string is copied, and a sink declared `STRING` (a string view column) takes the column
//! as it is.

use std::sync::Arc;

use streams_core::arrow::array::builder::make_view;
use streams_core::arrow::array::{
    Array, ArrayRef, AsArray, ByteView, MAX_INLINE_VIEW_LEN, NullBufferBuilder, StringViewArray,
};
use streams_core::arrow::buffer::{Buffer, ScalarBuffer};
use streams_core::arrow::compute::cast;
use streams_core::arrow::datatypes::DataType;
use streams_core::datafusion::common::{Result, internal_err};

/// Calls `piece` with each row's index and non-NULL text, and gives what it returns (a slice
/// of the text it was given, or `None` for NULL) as a string view column. A column that is
/// not a string (view) column is cast to one first.
pub(super) fn pieces(
    text: &ArrayRef,
    mut piece: impl FnMut(usize, &str) -> Option<&str>,
) -> Result<ArrayRef> {
    let mut views = Vec::with_capacity(text.len());
    let mut nulls = NullBufferBuilder::new(text.len());
    let buffers: Vec<Buffer> = match text.data_type() {
        DataType::Utf8View => {
            let array = text.as_string_view();
            for (row, raw) in array.views().iter().enumerate() {
                let value = array.value(row);
                let found = array.is_valid(row).then(|| piece(row, value)).flatten();
                // A value of up to 12 bytes sits in its view (and so does any piece of it);
                // a longer one is in a data buffer, where its piece is too.
                let at = ByteView::from(*raw);
                let block =
                    (at.length > MAX_INLINE_VIEW_LEN).then_some((at.buffer_index, at.offset));
                push(&mut views, &mut nulls, value, found, block)?;
            }
            array.data_buffers().to_vec()
        }
        DataType::Utf8 => {
            let array = text.as_string::<i32>();
            let offsets = array.value_offsets();
            for (row, start) in offsets.iter().take(array.len()).enumerate() {
                let value = array.value(row);
                let found = array.is_valid(row).then(|| piece(row, value)).flatten();
                // Offsets of a (32-bit) string column are never negative.
                let offset = u32::try_from(*start).unwrap_or(0);
                push(&mut views, &mut nulls, value, found, Some((0, offset)))?;
            }
            vec![array.values().clone()]
        }
        _ => return pieces(&cast(text, &DataType::Utf8View)?, piece),
    };
    // SAFETY: every view was made by `make_view` from the bytes of a `&str` (valid UTF-8,
    // cut at character boundaries by `str` slicing): inline, or naming the buffer and offset
    // where exactly those bytes are (checked to lie inside the text they came from, which
    // lies at that place in `buffers`); NULL rows have an empty view.
    let array = unsafe {
        StringViewArray::new_unchecked(ScalarBuffer::from(views), buffers, nulls.finish())
    };
    Ok(Arc::new(array))
}

/// Appends the view of `found`, a slice of `text`; `block` is the buffer and offset where
/// `text` starts, or `None` when it is inline.
fn push(
    views: &mut Vec<u128>,
    nulls: &mut NullBufferBuilder,
    text: &str,
    found: Option<&str>,
    block: Option<(u32, u32)>,
) -> Result<()> {
    let Some(found) = found else {
        views.push(0);
        nulls.append_null();
        return Ok(());
    };
    nulls.append_non_null();
    let bytes = found.as_bytes();
    if bytes.len() <= MAX_INLINE_VIEW_LEN as usize {
        views.push(make_view(bytes, 0, 0));
        return Ok(());
    }
    let start = (bytes.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let inside = start
        .checked_add(bytes.len())
        .is_some_and(|end| end <= text.len());
    let (Some((buffer, offset)), true) = (block, inside) else {
        return internal_err!("a string function returned text that is not a piece of its input");
    };
    let Some(at) = u32::try_from(start)
        .ok()
        .and_then(|s| offset.checked_add(s))
    else {
        return internal_err!("a string piece starts past 4 GiB into its buffer");
    };
    views.push(make_view(bytes, buffer, at));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::arrow::array::{LargeStringArray, StringArray};

    fn split(text: ArrayRef, k: usize) -> Vec<Option<String>> {
        let out = pieces(&text, |_, t| t.split('/').nth(k)).unwrap();
        // The views must be what Arrow itself accepts (checks offsets, lengths, UTF-8).
        let checked = StringViewArray::try_new(
            out.as_string_view().views().clone(),
            out.as_string_view().data_buffers().to_vec(),
            out.nulls().cloned(),
        )
        .unwrap();
        checked.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn expected(texts: &[Option<&str>], k: usize) -> Vec<Option<String>> {
        texts
            .iter()
            .map(|t| t.and_then(|t| t.split('/').nth(k)).map(str::to_string))
            .collect()
    }

    #[test]
    fn pieces_of_every_string_type_are_views_of_the_same_bytes() {
        let texts = [
            Some("https://www.nexmark.com/a_very_long_directory_name/é_and_more/item.htm"),
            None,
            Some("short/x"),
            Some("a/b"),
            Some("/€€€€€€€€€€€€€€€€/"),
            Some(""),
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(texts.to_vec())),
            Arc::new(StringViewArray::from(texts.to_vec())),
            Arc::new(LargeStringArray::from(texts.to_vec())),
            // A slice: offsets no longer start at 0.
            Arc::new(StringArray::from(texts.to_vec()).slice(1, 4)),
        ];
        for array in arrays {
            for k in 0..6 {
                let want: Vec<_> = (0..array.len())
                    .map(|i| match array.is_null(i) {
                        true => None,
                        false => {
                            let v = cast(&array, &DataType::Utf8).unwrap();
                            Some(v.as_string::<i32>().value(i).to_string())
                        }
                    })
                    .collect();
                let want: Vec<Option<&str>> = want.iter().map(|v| v.as_deref()).collect();
                assert_eq!(split(array.clone(), k), expected(&want, k), "piece {k}");
            }
        }
    }

    #[test]
    fn a_piece_that_is_not_of_the_text_is_an_error_not_a_bad_view() {
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a long text, longer than 12"]));
        let got = pieces(&text, |_, _| Some("another long text, not a piece"));
        assert!(got.is_err());
    }
}
