//! The mutations of behaviour.md §4, one module each. Each adds only what is missing and reports whether
//! it changed anything; `engine` records the changes in `wasm-admission.io/injected`.

pub mod annotations;
pub mod otel;
pub mod resources;
pub mod runtime_class;

/// What a mutation changed, in the order of the `wasm-admission.io/injected` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    RuntimeClass,
    Resources,
    Otel,
    Annotations,
}

impl Change {
    pub const ALL: [Change; 4] = [
        Self::RuntimeClass,
        Self::Resources,
        Self::Otel,
        Self::Annotations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RuntimeClass => "runtime-class",
            Self::Resources => "resources",
            Self::Otel => "otel",
            Self::Annotations => "annotations",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}
