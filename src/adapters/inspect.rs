//! The one inspect-then-decide step of `serve`, `check` and `audit` (behaviour.md §3 rule 6):
//! collect the images the engine will ask about ([`Engine::registry_images`]), look them up
//! together within the door's time budget ([`Lookups::inspect`]), and hand the answers to the
//! engine with the door's other facts ([`decide`]). The doors choose only the budget, the image
//! cap and the facts they have (the cluster's RuntimeClasses and nodes, for `serve`).

use std::time::Duration;

use crate::adapters::registry::{Inspector, RegistryFacts};
use crate::core::detection::{ClusterRuntimeClasses, ImageClass, ImageClassifier};
use crate::core::engine::{Decision, Endpoint, Engine, EngineError, Facts, Request};

/// The images to look up, gathered request by request (a door that reads objects one at a time,
/// `audit`, keeps none of them for this).
#[derive(Debug, Default)]
pub struct Lookups {
    images: Vec<String>,
}

impl Lookups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the images the engine will ask about for `request`, with the cluster's RuntimeClasses
    /// the door will hand it. A panic in the engine (a bug) adds none: the decision that follows
    /// reports the images as not looked up, and the door answers as it does for any panic.
    pub fn add(
        &mut self,
        engine: &Engine,
        request: &Request<'_>,
        runtime_classes: Option<&ClusterRuntimeClasses>,
    ) {
        let images = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.registry_images(request, runtime_classes)
        }))
        .unwrap_or_default();
        self.images.extend(images);
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Looks the images up all at once; the whole set gets `wait`. With `cap`, only the first
    /// `cap` images (in order) are looked up, and the rest are "unknown" with the reason `why`
    /// names. `None` when there was nothing to look up.
    pub async fn inspect(
        self,
        inspector: &Inspector,
        wait: Duration,
        cap: Option<Cap>,
    ) -> Option<RegistryFacts> {
        if self.images.is_empty() {
            return None;
        }
        let (images, skipped) = split_at_cap(self.images, cap);
        let mut facts = inspector
            .inspect(images.iter().map(String::as_str), wait)
            .await;
        if let Some(cap) = cap {
            for image in skipped {
                facts.classes.insert(
                    image,
                    ImageClass::Unknown {
                        reason: cap.reason.to_string(),
                    },
                );
            }
        }
        Some(facts)
    }
}

/// The most images one inspection looks up, and the reason given for those left out.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    pub images: usize,
    pub reason: &'static str,
}

/// The door's facts with the registry's answers added.
pub fn with_registry<'a>(facts: Facts<'a>, registry: Option<&'a RegistryFacts>) -> Facts<'a> {
    Facts {
        registry: registry.map(|r| r as &dyn ImageClassifier),
        ..facts
    }
}

/// Decides on one request with the registry's answers and the door's other facts.
pub fn decide(
    engine: &Engine,
    request: &Request<'_>,
    endpoint: Endpoint,
    facts: Facts<'_>,
    registry: Option<&RegistryFacts>,
) -> Result<Decision, EngineError> {
    engine.decide(request, endpoint, &with_registry(facts, registry))
}

/// The images to look up (the first `cap.images`, in order) and those left out.
fn split_at_cap(mut images: Vec<String>, cap: Option<Cap>) -> (Vec<String>, Vec<String>) {
    let skipped = match cap {
        Some(cap) => images.split_off(images.len().min(cap.images)),
        None => Vec::new(),
    };
    (images, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_past_the_cap_are_left_out_in_order() {
        let cap = Some(Cap {
            images: 32,
            reason: "too many",
        });
        let images: Vec<String> = (0..40).map(|i| format!("r.example/i{i}:1")).collect();
        let (inspected, skipped) = split_at_cap(images.clone(), cap);
        assert_eq!(inspected.len(), 32);
        assert_eq!(inspected[0], "r.example/i0:1");
        assert_eq!(skipped.len(), 8);
        assert_eq!(skipped[0], "r.example/i32:1");
        let (inspected, skipped) = split_at_cap(vec!["a".into()], cap);
        assert_eq!((inspected.len(), skipped.len()), (1, 0));
        let (inspected, skipped) = split_at_cap(images, None);
        assert_eq!((inspected.len(), skipped.len()), (40, 0));
    }
}
