//! The seven kinds the webhook acts on and where each keeps its pod spec (behaviour.md §2).

/// A kind that carries a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 7] = [
        Self::Pod,
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::ReplicaSet,
        Self::Job,
        Self::CronJob,
    ];

    /// The kind for an API group, version and kind; `None` for every kind the webhook ignores.
    pub fn from_gvk(group: &str, version: &str, kind: &str) -> Option<Self> {
        let found = match (group, kind) {
            ("", "Pod") => Self::Pod,
            ("apps", "Deployment") => Self::Deployment,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("apps", "DaemonSet") => Self::DaemonSet,
            ("apps", "ReplicaSet") => Self::ReplicaSet,
            ("batch", "Job") => Self::Job,
            ("batch", "CronJob") => Self::CronJob,
            _ => return None,
        };
        (version == "v1").then_some(found)
    }

    /// Splits a manifest's `apiVersion` (`apps/v1`, `v1`) and looks the kind up.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Self> {
        let (group, version) = split_api_version(api_version);
        Self::from_gvk(group, version, kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// JSON-pointer tokens of the pod spec.
    pub fn pod_spec_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &["spec"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }

    /// JSON-pointer tokens of the pod metadata (the Pod's own, or the pod template's).
    pub fn pod_metadata_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &["metadata"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template", "metadata"],
            _ => &["spec", "template", "metadata"],
        }
    }

    /// Everything but a bare Pod carries a pod template.
    pub fn is_template(self) -> bool {
        self != Self::Pod
    }

    /// Whether UPDATE may change the pod spec (behaviour.md §2: templates are mutable, Pods and Jobs not).
    pub fn pod_spec_mutable_on_update(self) -> bool {
        !matches!(self, Self::Pod | Self::Job)
    }

    /// The OpenTelemetry resource attribute naming the workload (`k8s.deployment.name`, ...).
    pub fn otel_name_attribute(self) -> Option<&'static str> {
        match self {
            Self::Pod => None,
            Self::Deployment => Some("k8s.deployment.name"),
            Self::StatefulSet => Some("k8s.statefulset.name"),
            Self::DaemonSet => Some("k8s.daemonset.name"),
            Self::ReplicaSet => Some("k8s.replicaset.name"),
            Self::Job => Some("k8s.job.name"),
            Self::CronJob => Some("k8s.cronjob.name"),
        }
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seven_kinds_are_recognised_by_group_and_version() {
        for kind in WorkloadKind::ALL {
            let group = match kind {
                WorkloadKind::Pod => "",
                WorkloadKind::Job | WorkloadKind::CronJob => "batch",
                _ => "apps",
            };
            assert_eq!(
                WorkloadKind::from_gvk(group, "v1", kind.as_str()),
                Some(kind)
            );
        }
        assert_eq!(
            WorkloadKind::from_gvk("apps", "v1beta1", "Deployment"),
            None
        );
        assert_eq!(WorkloadKind::from_gvk("", "v1", "Deployment"), None);
        assert_eq!(WorkloadKind::from_gvk("", "v1", "Service"), None);
        assert_eq!(
            WorkloadKind::from_api_version("batch/v1", "CronJob"),
            Some(WorkloadKind::CronJob)
        );
    }
}
