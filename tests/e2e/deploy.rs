//! The deployment files as far as this machine can check them: the
//! Kubernetes manifests render with kustomize (`kubectl kustomize`, no
//! cluster needed) into what docs/operations.md promises, and the policy
//! they ship passes `hoop-broker policy check`. The Dockerfile and
//! deploy/compose.yaml are not built or run here (no Docker daemon): the
//! broker configs they mount are parsed by a unit test of `config.rs`.

use std::process::Command;
use std::time::Duration;

use hoop_e2e::*;

#[test]
fn the_kubernetes_manifests_render_with_probes_udp_and_a_disruption_budget() {
    let deploy = tests_dir().join("../deploy/kubernetes");
    let mut k = Command::new("kubectl");
    k.arg("kustomize").arg(&deploy);
    let out = run_bounded(k, Duration::from_secs(60));
    assert_eq!(out.status, Some(0), "kubectl kustomize: {}", out.stderr);
    let y = out.stdout;
    for kind in [
        "kind: Deployment",
        "kind: Service",
        "kind: PodDisruptionBudget",
        "kind: ConfigMap",
    ] {
        assert!(y.contains(kind), "{kind} missing:\n{y}");
    }
    for want in [
        "replicas: 2",
        "protocol: UDP",
        "path: /readyz",
        "path: /healthz",
        "minAvailable: 1",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "terminationGracePeriodSeconds: 30",
        "secretName: hoop-broker-tls",
        "secretName: hoop-broker-keys",
        "broker.toml: |",
        "policy.toml: |",
        "cpu: 500m",
    ] {
        assert!(y.contains(want), "{want:?} missing:\n{y}");
    }
    // The ConfigMap's name carries kustomize's content hash, and the
    // Deployment mounts that very name.
    let name = y
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: hoop-broker-config-"))
        .expect("a hashed ConfigMap name");
    assert_eq!(
        y.matches(&format!("hoop-broker-config-{name}")).count(),
        2,
        "{y}"
    );

    let mut check = Command::new(bin("hoop-broker"));
    check
        .args(["policy", "check"])
        .arg(deploy.join("policy.toml"));
    let out = run_bounded(check, Duration::from_secs(30));
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
}
