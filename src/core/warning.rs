//! The text of a warning returned to the client (behaviour.md §9), and the list one answer
//! carries.

use std::collections::HashSet;

/// The most warnings one answer carries before the rest are summed up in one line.
///
/// kube-apiserver keeps at most 4,096 characters of warnings per request, over every webhook
/// and its own (k8s.io/apiserver, `endpoints/filters/warning.go`: `truncateAtTotalRunes`); past
/// that it cuts each to 256 characters and then drops the rest. 20 warnings of at most
/// [`MAX_CHARS`] characters and the summary line come to at most 2,520 characters: all of this
/// webhook's warnings arrive whole, with about 1,500 characters left for other webhooks and the
/// apiserver's own (deprecations, unknown fields).
pub const MAX_WARNINGS: usize = 20;

/// The longest warning, prefix included.
pub const MAX_CHARS: usize = 120;

const PREFIX: &str = "wasm-admission: ";

/// A warning as kubectl shows it: prefixed, and cut to 120 characters.
pub fn warning(text: &str) -> String {
    let mut out = String::with_capacity(MAX_CHARS);
    out.push_str(PREFIX);
    out.push_str(text);
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// The warnings of one answer: each text once, in the order first given; beyond
/// [`MAX_WARNINGS`] distinct ones, the first 20 and `wasm-admission: N more warnings`. Linear in
/// the number of warnings (a pod with 40,000 containers on an unreachable registry gives 40,000).
pub fn collapse(warnings: Vec<String>) -> Vec<String> {
    if warnings.len() <= 1 {
        return warnings;
    }
    let mut seen = HashSet::with_capacity(warnings.len().min(1024));
    let mut kept = Vec::with_capacity(warnings.len().min(MAX_WARNINGS + 1));
    let mut more = 0usize;
    for w in warnings {
        if seen.contains(w.as_str()) {
            continue;
        }
        if kept.len() < MAX_WARNINGS {
            seen.insert(w.clone());
            kept.push(w);
        } else {
            seen.insert(w);
            more += 1;
        }
    }
    if more > 0 {
        let plural = if more == 1 { "" } else { "s" };
        kept.push(warning(&format!("{more} more warning{plural}")));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_warnings_are_given_once_in_their_first_order() {
        let w = |s: &str| warning(s);
        let list = vec![w("b"), w("a"), w("b"), w("a"), w("c")];
        assert_eq!(collapse(list), vec![w("b"), w("a"), w("c")]);
    }

    #[test]
    fn forty_thousand_warnings_become_at_most_twenty_and_a_count() {
        let list: Vec<String> = (0..40_000)
            .map(|i| warning(&format!("image r.example/i{}:1 not inspected", i % 25)))
            .collect();
        let out = collapse(list);
        assert_eq!(out.len(), MAX_WARNINGS + 1);
        assert_eq!(out[MAX_WARNINGS], "wasm-admission: 5 more warnings");
        assert!(
            out.iter()
                .all(|w| w.starts_with(PREFIX) && w.chars().count() <= MAX_CHARS)
        );
        let total: usize = out.iter().map(|w| w.chars().count()).sum();
        assert!(total <= 4096, "{total}");
        let one_more: Vec<String> = (0..=MAX_WARNINGS)
            .map(|i| warning(&i.to_string()))
            .collect();
        assert_eq!(
            collapse(one_more)[MAX_WARNINGS],
            "wasm-admission: 1 more warning"
        );
        let exactly: Vec<String> = (0..MAX_WARNINGS).map(|i| warning(&i.to_string())).collect();
        assert_eq!(collapse(exactly.clone()), exactly);
    }

    #[test]
    fn a_huge_list_collapses_to_the_first_twenty_and_a_count() {
        // 200,000 distinct warnings: the time this takes is a benchmark's business, not a test's.
        let list: Vec<String> = (0..200_000).map(|i| warning(&i.to_string())).collect();
        let out = collapse(list);
        assert_eq!(out.len(), MAX_WARNINGS + 1);
        assert_eq!(out[0], warning("0"));
        assert_eq!(out[MAX_WARNINGS], "wasm-admission: 199980 more warnings");
    }
}
