//! The adapters: the code that does I/O and hands facts to the core. They import the core, never
//! a command.
//!
//! - `registry`: image inspection in OCI registries, for detection rule 6 (behaviour.md §3)
//! - `cluster_objects`: `audit`'s paginated reads of the seven kinds and its PolicyReport writes (§11)
//! - `nodes`: the labels of the cluster's nodes, watched (behaviour.md §11)
//! - `runtime_classes`: the cluster's RuntimeClasses, watched (behaviour.md §3 rule 3b, §7)
//! - `tls`: the crypto provider, the serving certificate and its reloading, certificate material
//! - `config_file`: reading the configuration file (behaviour.md §8)
//! - `inspect`: the one inspect-then-decide step of `serve`, `check` and `audit`: the images the
//!   engine will ask about, looked up within the door's budget, then the decision (§3 rule 6)
//! - `report`: an object decided as a CREATE, and the report formats `check` and `audit` write
//!   (§7, §11)

pub mod cluster_objects;
pub mod config_file;
pub mod inspect;
pub mod nodes;
pub mod registry;
pub mod report;
pub mod runtime_classes;
pub mod tls;
