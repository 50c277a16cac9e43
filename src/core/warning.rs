//! The text of a warning returned to the client (behaviour.md §9).

/// A warning as kubectl shows it: prefixed, and cut to 120 characters.
pub fn warning(text: &str) -> String {
    const PREFIX: &str = "wasm-admission: ";
    const MAX: usize = 120;
    let mut out = String::with_capacity(MAX);
    out.push_str(PREFIX);
    out.push_str(text);
    if out.chars().count() > MAX {
        out = out.chars().take(MAX - 1).collect();
        out.push('…');
    }
    out
}
