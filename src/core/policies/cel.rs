//! CEL text: literals for values taken from the configuration, and image globs as regular
//! expressions. Every configured string reaches the generated expressions through [`string`],
//! so no configuration value can change an expression's structure.

use globset::Glob;

/// A CEL string literal: single-quoted, with `\`, `'` and every control character escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list of string literals.
pub fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(string).collect();
    format!("[{}]", items.join(", "))
}

/// A CEL map literal from string keys to string values.
pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{}: {}", string(k), string(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The RE2 regular expression (CEL's `matches`) equal to an image glob of
/// `detection.imagePatterns`, compiled as the engine compiles it (`*` within one path segment).
/// globset writes its regular expressions in Rust's syntax, which is RE2's except for the
/// `(?-u)` flag (bytes instead of Unicode scalar values): image references are ASCII, so
/// dropping it changes no match.
pub fn glob_regex(glob: &Glob) -> String {
    glob.regex().replace("(?-u)", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::detection::compile_pattern;

    #[test]
    fn string_literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(string("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(string("x\ny\u{1}"), r"'x\ny\u0001'");
        assert_eq!(strings(["a", "b"]), "['a', 'b']");
        assert_eq!(string_map([("k/1", "v")]), "{'k/1': 'v'}");
    }

    #[test]
    fn glob_regexes_keep_star_within_a_segment() {
        let re = glob_regex(&compile_pattern("registry.example.com/wasm/*").unwrap());
        assert!(!re.contains("(?-u)"), "{re}");
        let re = regex_lite(&re);
        assert!(re("registry.example.com/wasm/app:v1"));
        assert!(!re("registry.example.com/wasm/team/app:v1"));
    }

    #[test]
    fn glob_regexes_match_exactly_what_the_engine_globs_match() {
        let patterns = [
            "registry.example.com/wasm/*",
            "registry.example.com/wasm/**",
            "**/*-wasm:*",
            "ghcr.io/acme/{spin,wasi}-*",
            "docker.io/library/hello-wasm:?.?",
            "*.azurecr.io/[a-c]*/app@sha256:*",
        ];
        let images = [
            "registry.example.com/wasm/app:v1",
            "registry.example.com/wasm/team/app:v1",
            "registry.example.com/other/app",
            "ghcr.io/acme/spin-orders:1",
            "ghcr.io/acme/wasi-hello",
            "ghcr.io/acme/other",
            "x/y/cart-wasm:2",
            "cart-wasm:2",
            "docker.io/library/hello-wasm:1.0",
            "docker.io/library/hello-wasm:10.0",
            "my.azurecr.io/acme/app@sha256:abc",
            "my.azurecr.io/zeta/app@sha256:abc",
            "",
        ];
        for pattern in patterns {
            let glob = compile_pattern(pattern).unwrap();
            let engine = glob.compile_matcher();
            let re = regex_lite(&glob_regex(&glob));
            for image in images {
                assert_eq!(re(image), engine.is_match(image), "{pattern} on {image:?}");
            }
        }
    }

    /// The regex crate is in the tree through globset; it reads the same syntax as RE2 here.
    fn regex_lite(re: &str) -> impl Fn(&str) -> bool + use<> {
        let re = regex::Regex::new(re).unwrap();
        move |s| re.is_match(s)
    }
}
