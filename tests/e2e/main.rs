//! The end-to-end suite: the project against a real kube-apiserver and kube-controller-manager,
//! built from Kubernetes' own source at the release pinned in `e2e/controlplane/go.mod`
//! (`scripts/cluster.sh`), with the project's chart installed by the real helm and objects
//! written by the real kubectl.
//!
//! One control plane at a time: the cases of `CASES` share one, then the node cases
//! (`NODE_CASES`, tests/e2e/node.rs) share another started with `cluster.sh up --node`. Cases run
//! one after another; each case works
//! in namespaces of its own and puts back whatever shared state it changes (the configuration,
//! the failure policy, the certificate), also when it fails. Everything started here is stopped
//! when the run ends, whatever its outcome.
//!
//! `cargo test --test e2e` runs it (the README's test command does); `cargo test --test e2e --
//! NAME` runs the cases whose name contains NAME.

mod admission;
mod audit;
mod boundary;
mod chart;
mod controllers;
mod day_two;
mod failure;
mod match_conditions;
mod metrics;
mod native_policies;
mod node;
mod pod_security;
mod reinvocation;
mod rotation;
mod runtime_classes;
mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use support::World;

type Case = (&'static str, fn(&World));
type NodeCase = (&'static str, fn(&node::NodeWorld));

const CASES: &[Case] = &[
    (
        "no_opt_out_on_the_pod_gets_a_privileged_wasm_pod_past_any_door",
        boundary::no_opt_out_on_the_pod_gets_a_privileged_wasm_pod_past_any_door,
    ),
    (
        "generated_policies_never_fail_open_on_cost",
        boundary::generated_policies_never_fail_open_on_cost,
    ),
    (
        "every_example_is_stored_as_check_predicts",
        admission::every_example_is_stored_as_check_predicts,
    ),
    (
        "server_dry_run_returns_the_mutated_object_and_stores_nothing",
        admission::server_dry_run_returns_the_mutated_object_and_stores_nothing,
    ),
    (
        "warnings_and_denials_reach_kubectl_in_the_webhooks_words",
        admission::warnings_and_denials_reach_kubectl_in_the_webhooks_words,
    ),
    (
        "unlabelled_namespaces_the_skip_label_and_kube_system_are_untouched",
        admission::unlabelled_namespaces_the_skip_label_and_kube_system_are_untouched,
    ),
    (
        "pods_of_a_mutated_template_come_out_identical_to_it",
        controllers::pods_of_a_mutated_template_come_out_identical_to_it,
    ),
    (
        "pods_are_mutated_when_templates_are_not",
        controllers::pods_are_mutated_when_templates_are_not,
    ),
    (
        "a_sidecar_added_after_the_webhook_gets_resources_on_reinvocation",
        reinvocation::a_sidecar_added_after_the_webhook_gets_resources_on_reinvocation,
    ),
    (
        "a_pod_whose_class_the_webhook_injects_is_mutated_once",
        reinvocation::a_pod_whose_class_the_webhook_injects_is_mutated_once,
    ),
    (
        "a_later_mutation_that_sets_privileged_is_refused_by_validate",
        reinvocation::a_later_mutation_that_sets_privileged_is_refused_by_validate,
    ),
    (
        "missing_runtime_class_warning_appears_and_disappears_without_restart",
        runtime_classes::missing_runtime_class_warning_appears_and_disappears_without_restart,
    ),
    (
        "a_class_whose_handler_runs_wasm_makes_its_pods_wasm",
        runtime_classes::a_class_whose_handler_runs_wasm_makes_its_pods_wasm,
    ),
    (
        "no_node_matches_warning_appears_and_disappears_without_restart",
        audit::no_node_matches_warning_appears_and_disappears_without_restart,
    ),
    (
        "audit_finds_existing_objects_with_the_verdict_check_gives",
        audit::audit_finds_existing_objects_with_the_verdict_check_gives,
    ),
    (
        "policy_reports_are_applied_and_read_back_with_kubectl",
        audit::policy_reports_are_applied_and_read_back_with_kubectl,
    ),
    (
        "policy_reports_of_other_tools_survive_uninstall_and_audit_off",
        chart::policy_reports_of_other_tools_survive_uninstall_and_audit_off,
    ),
    (
        "audit_without_permission_or_apiserver_says_what_to_fix",
        audit::audit_without_permission_or_apiserver_says_what_to_fix,
    ),
    (
        "baseline_verdicts_equal_pod_security_admission_at_every_version",
        pod_security::baseline_verdicts_equal_pod_security_admission_at_every_version,
    ),
    (
        "native_policies_store_and_deny_what_the_webhook_does",
        native_policies::native_policies_store_and_deny_what_the_webhook_does,
    ),
    (
        "generated_pods_get_the_same_outcome_from_check_and_the_native_policies",
        native_policies::generated_pods_get_the_same_outcome_from_check_and_the_native_policies,
    ),
    (
        "generated_baseline_denies_as_the_webhook_at_every_version",
        native_policies::generated_baseline_denies_as_the_webhook_at_every_version,
    ),
    (
        "mode_both_keeps_enforcing_with_the_webhook_down_and_warns_with_it_up",
        native_policies::mode_both_keeps_enforcing_with_the_webhook_down_and_warns_with_it_up,
    ),
    (
        "kubectl_debug_is_judged_alike_by_the_webhook_and_the_native_policies",
        native_policies::kubectl_debug_is_judged_alike_by_the_webhook_and_the_native_policies,
    ),
    (
        "image_patterns_make_pods_wasm_in_the_policies_as_in_check",
        native_policies::image_patterns_make_pods_wasm_in_the_policies_as_in_check,
    ),
    (
        "objects_that_cannot_be_wasm_cost_no_webhook_call",
        match_conditions::objects_that_cannot_be_wasm_cost_no_webhook_call,
    ),
    (
        "a_scale_and_a_rollout_make_no_workload_update_call",
        match_conditions::a_scale_and_a_rollout_make_no_workload_update_call,
    ),
    (
        "with_serve_down_only_new_wasm_pods_wait_for_the_webhook",
        match_conditions::with_serve_down_only_new_wasm_pods_wait_for_the_webhook,
    ),
    (
        "the_largest_image_conditions_stay_inside_the_cel_cost_budget",
        match_conditions::the_largest_image_conditions_stay_inside_the_cel_cost_budget,
    ),
    (
        "with_serve_down_fail_blocks_opted_in_creates_and_ignore_lets_them_pass",
        failure::with_serve_down_fail_blocks_opted_in_creates_and_ignore_lets_them_pass,
    ),
    (
        "an_oversized_review_under_ignore_is_denied_not_admitted",
        failure::an_oversized_review_under_ignore_is_denied_not_admitted,
    ),
    (
        "audit_account_creates_and_patches_only_its_own_reports",
        audit::audit_account_creates_and_patches_only_its_own_reports,
    ),
    (
        "helm_upgrade_keeps_the_generated_certificate",
        failure::helm_upgrade_keeps_the_generated_certificate,
    ),
    (
        "certificate_rotation_during_creates_fails_no_create",
        rotation::certificate_rotation_during_creates_fails_no_create,
    ),
    (
        "apiserver_metrics_count_the_webhook_calls_and_denials",
        metrics::apiserver_metrics_count_the_webhook_calls_and_denials,
    ),
    (
        "a_bundle_with_its_classes_gets_the_same_answers_from_check_and_serve",
        runtime_classes::a_bundle_with_its_classes_gets_the_same_answers_from_check_and_serve,
    ),
    (
        "quick_start_verification_commands_show_the_webhook_working",
        day_two::quick_start_verification_commands_show_the_webhook_working,
    ),
    (
        "renewal_and_ca_rollover_with_the_certs_command_fail_no_create",
        day_two::renewal_and_ca_rollover_with_the_certs_command_fail_no_create,
    ),
    (
        "uninstall_with_the_webhook_down_leaves_no_configuration_and_a_reinstall_works",
        day_two::uninstall_with_the_webhook_down_leaves_no_configuration_and_a_reinstall_works,
    ),
];

/// The cases on a worker node (tests/e2e/node.rs). They run on a control plane of their own,
/// started with `cluster.sh up --node` after the cases above are done: a node runs the pods the
/// other cases create (images of docker.io and made-up registries, which the node must never try
/// to pull), and the node needs root and its own builds (containerd, the Wasm shim).
const NODE_CASES: &[NodeCase] = &[
    (
        "a_wasm_deployment_is_scheduled_through_its_class_and_runs_under_the_shim",
        node::a_wasm_deployment_is_scheduled_through_its_class_and_runs_under_the_shim,
    ),
    (
        "the_telemetry_environment_and_the_downward_api_reach_the_module",
        node::the_telemetry_environment_and_the_downward_api_reach_the_module,
    ),
    (
        "an_ordinary_runc_pod_runs_beside_a_wasm_pod_on_the_same_node",
        node::an_ordinary_runc_pod_runs_beside_a_wasm_pod_on_the_same_node,
    ),
    (
        "every_resource_profile_starts_a_module_and_keeps_it_running",
        node::every_resource_profile_starts_a_module_and_keeps_it_running,
    ),
    (
        "a_wasm_job_and_a_job_of_a_wasm_cronjob_complete",
        node::a_wasm_job_and_a_job_of_a_wasm_cronjob_complete,
    ),
    (
        "registry_detection_runs_an_unannotated_wasm_image_under_the_shim",
        node::registry_detection_runs_an_unannotated_wasm_image_under_the_shim,
    ),
    (
        "the_no_node_warning_appears_exactly_while_the_scheduler_leaves_the_pod_pending",
        node::the_no_node_warning_appears_exactly_while_the_scheduler_leaves_the_pod_pending,
    ),
    (
        "a_privileged_wasm_pod_is_denied_and_a_privileged_runc_pod_runs",
        node::a_privileged_wasm_pod_is_denied_and_a_privileged_runc_pod_runs,
    ),
    (
        "chart_mode_policies_runs_the_same_pod_as_mode_webhook",
        node::chart_mode_policies_runs_the_same_pod_as_mode_webhook,
    ),
];

/// Runs one case, catching its panic; prints its line and returns whether it passed.
fn run_case(name: &str, case: impl FnOnce()) -> bool {
    let t = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(case));
    let secs = t.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => println!("test {name} ... ok ({secs:.1} s)"),
        Err(_) => println!("test {name} ... FAILED ({secs:.1} s)"),
    }
    outcome.is_ok()
}

fn main() -> ExitCode {
    // cargo passes its own flags (e.g. --test-threads, --nocapture) and at most a filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    // `cargo test --test e2e -- node::` runs the node cases alone.
    let node_selected: Vec<&NodeCase> = NODE_CASES
        .iter()
        .filter(|(name, _)| {
            filter
                .as_deref()
                .is_none_or(|f| format!("node::{name}").contains(f))
        })
        .collect();
    let total = CASES.len() + NODE_CASES.len();
    if std::env::args().any(|a| a == "--list") {
        for name in selected
            .iter()
            .map(|c| c.0)
            .chain(node_selected.iter().map(|c| c.0))
        {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let count = selected.len() + node_selected.len();
    println!("\nrunning {count} end-to-end tests");
    if count == 0 {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        return ExitCode::SUCCESS;
    }

    let started = Instant::now();
    let mut failed: Vec<&str> = Vec::new();
    if !selected.is_empty() {
        match catch_unwind(World::start) {
            Ok(world) => {
                println!(
                    "control plane, chart and webhook up in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                for (name, case) in &selected {
                    if !run_case(name, || case(&world)) {
                        failed.push(name);
                    }
                }
                drop(world);
            }
            Err(_) => {
                println!("\nthe control plane or the webhook did not start (see above)");
                failed.extend(selected.iter().map(|c| c.0));
            }
        }
    }
    if !node_selected.is_empty() {
        let t = Instant::now();
        match catch_unwind(|| {
            let (world, node) = World::start_with_node();
            node::prepare(&world);
            node::NodeWorld { world, node }
        }) {
            Ok(world) => {
                println!(
                    "control plane with a node, chart and webhook up in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
                for (name, case) in &node_selected {
                    if !run_case(name, || case(&world)) {
                        failed.push(name);
                    }
                }
                drop(world);
            }
            Err(_) => {
                println!(
                    "\nthe control plane with a node or the webhook did not start (see above)"
                );
                failed.extend(node_selected.iter().map(|c| c.0));
            }
        }
    }

    let passed = count - failed.len();
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.1}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        total - count,
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
