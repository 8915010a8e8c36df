//! Where in `proxy.yaml` a value is written, for errors found after the
//! YAML parser is done (it only positions errors raised while it reads).

/// ` at line L column C` for the first occurrence of `needle`, or nothing.
pub(super) fn locate(text: &str, needle: &str) -> String {
    locate_nth(text, needle, 0)
}

/// Like [`locate`], for the occurrence after `skip` earlier ones.
fn locate_nth(text: &str, needle: &str, skip: usize) -> String {
    text.match_indices(needle)
        .nth(skip)
        .map_or_else(String::new, |(offset, _)| position(text, offset))
}

/// Like [`locate_nth`], for the entry `key: value` (value plain or quoted;
/// an empty `value` finds the key whatever follows it). Unlike a bare
/// substring search, `name: ws` does not find `name: ws2` nor `hostname: ws`,
/// and `example.com:` does not find `www.example.com:`.
pub(super) fn locate_entry(text: &str, key: &str, value: &str, skip: usize) -> String {
    entry_offset(text, key, value, skip).map_or_else(String::new, |offset| position(text, offset))
}

/// Like [`locate`], for the first `needle` after the top-level key
/// `section:` (at the start of a line), so that `kind:` of `storage:` is
/// not found among the listeners; nothing when either is not found.
pub(super) fn locate_in_section(text: &str, section: &str, needle: &str) -> String {
    let head = format!("{section}:");
    let Some(start) = text
        .match_indices(head.as_str())
        .map(|(offset, _)| offset)
        .find(|&offset| offset == 0 || text[..offset].ends_with('\n'))
    else {
        return String::new();
    };
    let after = start + head.len();
    text[after..]
        .find(needle)
        .map_or_else(String::new, |offset| position(text, after + offset))
}

/// The byte offset of the entry [`locate_entry`] looks for.
fn entry_offset(text: &str, key: &str, value: &str, skip: usize) -> Option<usize> {
    let needles: Vec<String> = if value.is_empty() {
        vec![format!("{key}:")]
    } else {
        ["", "\"", "'"]
            .iter()
            .map(|q| format!("{key}: {q}{value}{q}"))
            .collect()
    };
    let mut offsets: Vec<usize> = needles
        .iter()
        .flat_map(|needle| text.match_indices(needle.as_str()))
        .filter(|&(offset, needle)| {
            let before = text[..offset].chars().next_back();
            let after = text[offset + needle.len()..].chars().next();
            before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',')
                && after.is_none_or(|c| c.is_whitespace() || c == ',' || c == '}' || c == '#')
        })
        .map(|(offset, _)| offset)
        .collect();
    offsets.sort_unstable();
    offsets.get(skip).copied()
}

/// ` at line L column C` for a byte offset into `text`.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!(" at line {line} column {column}")
}
