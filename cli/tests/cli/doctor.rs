//! `aipm-analyze doctor` on a node laid out in a temporary directory: a plugstack line, a
//! powercap tree, the stand-in NVML with two GPUs, and a spool.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{aipm, json, s, standin_nvml};

fn standin(dir: &Path) -> std::path::PathBuf {
    let gpu = |uuid: &str| serde_json::json!({ "uuid": uuid, "name": "Fake", "power_w": 70.0, "start_unix_ms": 1_700_000_000_000u64 });
    standin_nvml(
        dir,
        &serde_json::json!({ "devices": [gpu("GPU-a"), gpu("GPU-b")] }),
    )
}

#[test]
fn doctor_reports_each_source_and_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let zone = root.join("powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("name"), "package-0\n").unwrap();
    std::fs::write(zone.join("energy_uj"), "42\n").unwrap();
    std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n").unwrap();
    let spool = root.join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lib = standin(root);
    let plugstack = root.join("plugstack.conf.d");
    std::fs::create_dir(&plugstack).unwrap();
    let line = format!(
        "required /usr/local/lib/aipm/libaipm_spank.so spool={} powercap_root={} nvml_lib={}\n",
        s(&spool),
        s(&root.join("powercap")),
        s(&lib)
    );
    std::fs::write(plugstack.join("aipm.conf"), line).unwrap();

    let checks = json(&aipm(&[
        "doctor",
        "--plugstack-dir",
        s(&plugstack),
        "--format",
        "json",
    ]));
    let found = |what: &str| -> (bool, String) {
        let c = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["what"] == what)
            .unwrap();
        (
            c["ok"].as_bool().unwrap(),
            c["found"].as_str().unwrap().to_string(),
        )
    };
    assert!(found("plugstack").0);
    assert_eq!(
        found("rapl"),
        (
            true,
            format!(
                "found (powercap at {}): package-0",
                s(&root.join("powercap"))
            )
        )
    );
    assert_eq!(found("nvml"), (true, "2 GPU(s): GPU-a, GPU-b".to_string()));
    assert!(found("spool").0);

    // A spool others can write to: the plugin would refuse it, and doctor says so.
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = aipm(&["doctor", "--plugstack-dir", s(&plugstack)]);
    assert_eq!(out.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("spool      FIX") && shown.contains("mode 777"),
        "{shown}"
    );
    assert!(
        shown.contains("-> install -d -o root -g root -m 0755"),
        "{shown}"
    );
}

/// `--gpu-probe` adds the first checks for a real GPU node, a line each; a GPU that cannot be
/// opened fails the nvml check, naming it, while the others are found.
#[test]
fn doctor_probes_the_gpus_and_names_one_that_cannot_be_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let gpu = |uuid: &str| serde_json::json!({ "uuid": uuid, "name": "Fake", "power_w": 70.0, "start_unix_ms": 1_700_000_000_000u64 });
    let mut lost = gpu("GPU-b");
    lost["error"] = "GPU_IS_LOST".into();
    let lib = standin_nvml(
        root,
        &serde_json::json!({ "process_entry_bytes": 32, "devices": [gpu("GPU-a"), lost] }),
    );
    let plugstack = root.join("plugstack.conf.d");
    std::fs::create_dir(&plugstack).unwrap();
    let line = format!(
        "required /usr/local/lib/aipm/libaipm_spank.so spool={} nvml_lib={}\n",
        s(&root.join("spool")),
        s(&lib)
    );
    std::fs::write(plugstack.join("aipm.conf"), line).unwrap();
    let out = aipm(&[
        "doctor",
        "--plugstack-dir",
        s(&plugstack),
        "--gpu-probe",
        "--probe-seconds",
        "0.2",
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("nvml       FIX  1 GPU(s): GPU-a; not opened: GPU 1: "),
        "{shown}"
    );
    assert!(
        shown.contains("gpu-probe  ok   open: 2 GPU(s) counted"),
        "{shown}"
    );
    assert!(shown.contains("gpu-probe  ok   energy: GPU 0: "), "{shown}");
    assert!(
        shown.contains("gpu-probe  ok   processes: GPU 0: nvmlDeviceGetComputeRunningProcesses_v3"),
        "{shown}"
    );
}
