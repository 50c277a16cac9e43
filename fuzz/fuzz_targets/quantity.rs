//! Quantity parsing (`quantity::Quantity::parse`): never a panic, and comparison is a total order:
//! antisymmetric, transitive (a ≤ b and b ≤ c ⇒ a ≤ c), consistent with equality, and a quantity
//! parses back to the same value from its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_admission::core::quantity::Quantity;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed: Vec<Quantity> = text
        .split('\n')
        .take(3)
        .filter_map(|t| Quantity::parse(t).ok())
        .collect();
    for a in &parsed {
        let again = Quantity::parse(a.as_str()).expect("a quantity's own text parses");
        assert_eq!(&again, a);
        for b in &parsed {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            assert_eq!(a == b, a.cmp(b).is_eq(), "{a} vs {b}");
            for c in &parsed {
                if a <= b && b <= c {
                    assert!(a <= c, "{a} <= {b} <= {c} but not {a} <= {c}");
                }
            }
        }
    }
});
