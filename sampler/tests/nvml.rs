//! The NVML source through the real `nvml-wrapper` calls, against the stand-in NVML library
//! (tests/nvml-standin) loaded by path.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aipm_sampler::sources::nvml::NvmlSource;
use aipm_sampler::sources::{EnergySource, Found, JobPids};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The stand-in, copied into `dir` with its state file beside it (one copy per test: a copy
/// at another path is loaded separately).
fn standin(dir: &Path, state: &serde_json::Value) -> PathBuf {
    aipm_nvml_standin::install::install(dir, state)
}

fn two_gpus(start_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "devices": [
            { "uuid": "GPU-aaaa", "name": "Fake A100", "power_w": 100.0, "energy_start_mj": 5_000,
              "start_unix_ms": start_ms, "util_gpu": 10, "util_mem": 1,
              "mem_total": 40u64 << 30, "mem_used": 1u64 << 30, "mem_reserved": 0 },
            { "uuid": "GPU-bbbb", "name": "Fake A100", "power_w": 250.0, "power_instant_w": 262.5, "energy_start_mj": 9_000_000,
              "start_unix_ms": start_ms, "util_gpu": 87, "util_mem": 40,
              "mem_total": 40u64 << 30, "mem_used": 30u64 << 30, "mem_reserved": 0 }
        ]
    })
}

fn open(lib: &Path, selectors: Option<&[String]>) -> NvmlSource {
    match NvmlSource::open(Some(lib), selectors).unwrap() {
        Found::Present(source) => source,
        Found::Absent(why) => panic!("absent: {why}"),
    }
}

#[test]
fn only_the_jobs_gpus_are_read_and_energy_is_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let lib = standin(dir.path(), &two_gpus(start));
    let mut source = open(&lib, Some(&["1".to_string()]));
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    assert_eq!(source.gauges().len(), 10);
    assert_eq!(
        source.gauges()[..3],
        [
            "GPU-bbbb:power_mw",
            "GPU-bbbb:util_pct",
            "GPU-bbbb:mem_used_bytes"
        ]
    );

    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let before = now_ms();
    source.read(&mut out, &mut errors);
    let after = now_ms();
    // The counter in µJ: 9 000 000 mJ + 250 W × elapsed ms.
    let uj = out[0].unwrap();
    let expected = |ms: u64| (9_000_000 + 250 * (ms - start)) * 1000;
    assert!((expected(before)..=expected(after)).contains(&uj), "{uj}");

    out.clear();
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    // Without the job's pids the per-process split is unknown.
    assert_eq!(
        out,
        [
            Some(250_000),
            Some(87),
            Some(30 << 30),
            None,
            None,
            None,
            None,
            None,
            None,
            Some(262_500)
        ]
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn gpus_are_found_by_uuid_or_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let lib = standin(dir.path(), &two_gpus(now_ms()));
    assert_eq!(
        open(&lib, Some(&["GPU-aaaa".to_string()])).channels(),
        ["GPU-aaaa"]
    );
    assert_eq!(open(&lib, None).channels(), ["GPU-aaaa", "GPU-bbbb"]);
    let err = NvmlSource::open(Some(&lib), Some(&["GPU-nope".to_string()]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("GPU GPU-nope"), "{err}");
}

#[test]
fn without_a_driver_the_source_is_absent_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let lib = standin(dir.path(), &two_gpus(now_ms()));
    fs::remove_file(dir.path().join("libnvidia-ml.so.json")).unwrap();
    assert!(
        matches!(NvmlSource::open(Some(&lib), None), Ok(Found::Absent(why)) if why.contains("driver not loaded"))
    );
    let missing = dir.path().join("nowhere/libnvidia-ml.so.1");
    assert!(
        matches!(NvmlSource::open(Some(&missing), None), Ok(Found::Absent(why)) if why.contains("no NVML library"))
    );
}

#[test]
fn a_lost_gpu_is_a_read_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let lib = standin(dir.path(), &two_gpus(start));
    let mut source = open(&lib, None);
    let mut state = two_gpus(start);
    state["devices"][0]["error"] = "GPU_IS_LOST".into();
    write_state(dir.path(), &state);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], None);
    assert!(out[1].is_some());
    assert!(errors[0].contains("GPU GPU-aaaa: energy"), "{errors:?}");
}

#[test]
fn older_gpus_without_the_counter_integrate_power() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][1]["errors"] =
        serde_json::json!({ "nvmlDeviceGetTotalEnergyConsumption": "NOT_SUPPORTED" });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["1".to_string()]));
    assert_eq!(source.integrated_channels(), ["GPU-bbbb"]);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(300));
    out.clear();
    source.read(&mut out, &mut errors);
    let expected_uj = 250.0 * t0.elapsed().as_secs_f64() * 1e6;
    let uj = out[0].unwrap() as f64;
    assert!(
        (uj - expected_uj).abs() < 0.05 * expected_uj,
        "{uj} µJ, expected about {expected_uj}"
    );
}

#[test]
fn a_shared_gpu_is_split_between_the_jobs_processes_and_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["processes"] = serde_json::json!([
        { "pid": 4242, "used_mem": 3u64 << 30, "sm_util": 60, "ts_us": 1_000 },
        { "pid": 4243, "used_mem": 1u64 << 30, "sm_util": 15, "ts_us": 2_000 },
        { "pid": 777, "used_mem": 2u64 << 30, "sm_util": 25, "ts_us": 3_000 }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    let find = || Some(vec![4243, 4242, 1]);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
    assert!(errors.is_empty(), "{errors:?}");
    // job_procs, other_procs, job_mem, other_mem, job_sm, other_sm
    assert_eq!(
        out[3..],
        [
            Some(2),
            Some(1),
            Some(4 << 30),
            Some(2 << 30),
            Some(75),
            Some(25),
            Some(100_000)
        ]
    );

    // The next sample finds no newer utilisation sample: the driver samples every 1/6 to
    // 1 s, so the last ones still stand (issue 17, row 3)...
    out.clear();
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
    assert_eq!(out[7..9], [Some(75), Some(25)]);
}

#[test]
fn a_mig_slice_gets_its_share_of_the_gpus_sms() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let mut state = two_gpus(start);
    state["devices"][1]["sm_count"] = 98.into();
    state["devices"][1]["mig"] = serde_json::json!([
        { "uuid": "MIG-1111", "sm_count": 14 },
        { "uuid": "MIG-2222", "sm_count": 28 }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["MIG-2222".to_string()]));
    assert_eq!(source.channels(), ["MIG-2222"]);
    assert_eq!(source.mig_slices(), ["MIG-2222: 0.286 of GPU-bbbb"]);

    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let before = now_ms();
    source.read(&mut out, &mut errors);
    let after = now_ms();
    // 28 of 98 SMs: 2/7 of the GPU's counter (9 000 000 mJ + 250 W × elapsed).
    let share = |ms: u64| ((9_000_000 + 250 * (ms - start)) * 1000) as f64 * 28.0 / 98.0;
    let uj = out[0].unwrap() as f64;
    assert!(
        uj >= share(before) - 1.0 && uj <= share(after) + 1.0,
        "{uj}"
    );

    out.clear();
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(out[0], Some(250_000 * 2 / 7));
    assert!(out[1..].iter().all(Option::is_none), "{out:?}");
}

#[test]
fn instant_power_is_read_where_the_driver_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["field_errors"] = serde_json::json!({ "186": "NOT_SUPPORTED" });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    let instant = source
        .gauges()
        .iter()
        .position(|g| g == "GPU-aaaa:power_instant_mw")
        .unwrap();
    assert_eq!(out[instant], None, "GPU-aaaa has no instant power field");
    let instant = source
        .gauges()
        .iter()
        .position(|g| g == "GPU-bbbb:power_instant_mw")
        .unwrap();
    assert_eq!(out[instant], Some(262_500));
    assert!(errors.is_empty(), "{errors:?}");
}

fn write_state(dir: &Path, state: &serde_json::Value) {
    let tmp = dir.join("state.tmp");
    fs::write(&tmp, state.to_string()).unwrap();
    fs::rename(&tmp, dir.join("libnvidia-ml.so.json")).unwrap();
}

#[test]
fn a_query_the_gpu_does_not_support_is_not_an_error_and_not_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][1]["errors"] =
        serde_json::json!({ "nvmlDeviceGetUtilizationRates": "NOT_SUPPORTED" });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    assert_eq!(source.unsupported(), ["GPU-bbbb: utilisation"]);

    // Were it still asked, this failure would show.
    state["devices"][1]["errors"] =
        serde_json::json!({ "nvmlDeviceGetUtilizationRates": "UNKNOWN" });
    write_state(dir.path(), &state);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        out.clear();
        source.read(&mut out, &mut errors);
        source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    }
    assert!(errors.is_empty(), "{errors:?}");
    // Energy of both GPUs, then 10 gauges each: GPU-bbbb's utilisation alone is empty.
    let gauges = &out[2..];
    assert_eq!(gauges[1], Some(10), "GPU-aaaa's utilisation");
    assert_eq!(gauges[10..13], [Some(250_000), None, Some(30 << 30)]);
    assert!(out[..2].iter().all(Option::is_some), "{out:?}");
}

#[test]
fn a_query_that_fails_otherwise_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetUtilizationRates": "UNKNOWN" });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    assert!(source.unsupported().is_empty());
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        source.read(&mut out, &mut errors);
        source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("GPU GPU-aaaa: utilisation"),
        "{errors:?}"
    );
}

#[test]
fn a_gpu_with_neither_energy_counter_nor_power_has_no_energy_and_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["errors"] = serde_json::json!({
        "nvmlDeviceGetTotalEnergyConsumption": "NOT_SUPPORTED",
        "nvmlDeviceGetPowerUsage": "NOT_SUPPORTED"
    });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(source.unsupported(), ["GPU-aaaa: energy, power"]);
    assert!(source.integrated_channels().is_empty());
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(out[..4], [None, None, Some(10), Some(1 << 30)]);
}

#[test]
fn a_gpu_that_cannot_be_found_is_one_error_per_sample_and_empty_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetHandleByIndex_v2": "UNKNOWN" });
    write_state(dir.path(), &state);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("GPU GPU-aaaa: "), "{errors:?}");
    // Energy of both GPUs, then the gauges: GPU-aaaa's all empty, GPU-bbbb's read.
    assert_eq!(
        out[..2].iter().map(Option::is_some).collect::<Vec<_>>(),
        [false, true]
    );
    assert!(out[2..12].iter().all(Option::is_none), "{out:?}");
    assert_eq!(out[12], Some(250_000));
}

#[test]
fn the_jobs_processes_are_looked_for_only_when_a_gpu_lists_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    let looked = std::cell::Cell::new(0);
    let find = || {
        looked.set(looked.get() + 1);
        Some(vec![4242])
    };
    let sample = |source: &mut NvmlSource| {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        source.read(&mut out, &mut errors);
        out.clear();
        source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
        assert!(errors.is_empty(), "{errors:?}");
        out
    };
    // Idle GPUs: nothing to split, and nothing of the job's on them.
    let out = sample(&mut source);
    assert_eq!(looked.get(), 0);
    assert_eq!(out[3..7], [Some(0); 4]);
    assert_eq!(out[13..17], [Some(0); 4]);

    // Processes on both GPUs: the job's are looked for once in the sample.
    for gpu in 0..2 {
        state["devices"][gpu]["processes"] = serde_json::json!([
            { "pid": 4242, "used_mem": 1u64 << 30 },
            { "pid": 777, "used_mem": 2u64 << 30 }
        ]);
    }
    write_state(dir.path(), &state);
    let out = sample(&mut source);
    assert_eq!(looked.get(), 1);
    let split = [Some(1), Some(1), Some(1 << 30), Some(2 << 30)];
    assert_eq!(out[3..7], split);
    assert_eq!(out[13..17], split);
}

/// `two_gpus` on a node whose device files are numbered against NVML's (PCI bus) order:
/// `/dev/nvidia0` is the GPU at NVML index 1.
fn two_gpus_with_swapped_minors(start_ms: u64) -> serde_json::Value {
    let mut state = two_gpus(start_ms);
    state["devices"][0]["minor"] = 1.into();
    state["devices"][1]["minor"] = 0.into();
    state
}

/// The energy (µJ) and power gauge (mW) of a source's only GPU, with the time range of the
/// reading.
fn energy_and_power(source: &mut NvmlSource) -> (u64, Option<u64>, u64, u64) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let before = now_ms();
    source.read(&mut out, &mut errors);
    let after = now_ms();
    let uj = out[0].unwrap();
    out.clear();
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert!(errors.is_empty(), "{errors:?}");
    (uj, out[0], before, after)
}

/// Slurm's GPU ids (`SLURM_JOB_GPUS`) are the N of `/dev/nvidiaN`, not NVML's index.
#[test]
fn slurms_gpu_ids_are_device_minor_numbers_not_nvml_indices() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let lib = standin(dir.path(), &two_gpus_with_swapped_minors(start));

    let mut source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    let (uj, power, before, after) = energy_and_power(&mut source);
    let expected = |ms: u64| (9_000_000 + 250 * (ms - start)) * 1000;
    assert!((expected(before)..=expected(after)).contains(&uj), "{uj}");
    assert_eq!(power, Some(250_000));

    let mut source = open(&lib, Some(&["1".to_string()]));
    assert_eq!(source.channels(), ["GPU-aaaa"]);
    let (uj, power, before, after) = energy_and_power(&mut source);
    let expected = |ms: u64| (5_000 + 100 * (ms - start)) * 1000;
    assert!((expected(before)..=expected(after)).contains(&uj), "{uj}");
    assert_eq!(power, Some(100_000));

    let both = ["1".to_string(), "0".to_string()];
    assert_eq!(open(&lib, Some(&both)).channels(), ["GPU-aaaa", "GPU-bbbb"]);
}

#[test]
fn a_gpu_id_no_device_has_as_minor_number_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    // /dev/nvidia2 and /dev/nvidia0: id 1 is no GPU, though NVML has an index 1.
    state["devices"][0]["minor"] = 2.into();
    state["devices"][1]["minor"] = 0.into();
    let lib = standin(dir.path(), &state);
    let err = NvmlSource::open(Some(&lib), Some(&["1".to_string()]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("minor number 1"), "{err}");
    assert!(err.contains("2 (NVML index 0), 0 (NVML index 1)"), "{err}");
}

#[test]
fn where_minor_numbers_follow_nvmls_order_ids_and_indices_agree() {
    let dir = tempfile::tempdir().unwrap();
    let lib = standin(dir.path(), &two_gpus(now_ms()));
    for (id, uuid) in [("0", "GPU-aaaa"), ("1", "GPU-bbbb")] {
        assert_eq!(open(&lib, Some(&[id.to_string()])).channels(), [uuid]);
    }
}

#[test]
fn a_gpu_without_a_minor_number_is_taken_by_its_index_and_the_source_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetMinorNumber": "NOT_SUPPORTED" });
    let lib = standin(dir.path(), &state);
    let source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(source.channels(), ["GPU-aaaa"]);
    assert_eq!(source.taken_by_index(), ["GPU-aaaa"]);
    let source = open(&lib, Some(&["1".to_string()]));
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    assert!(source.taken_by_index().is_empty());

    // A GPU that has the minor number is the one, whatever the other's index.
    state["devices"][1]["minor"] = 0.into();
    write_state(dir.path(), &state);
    let source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    assert!(source.taken_by_index().is_empty());
}

/// A sampler taking over a recording reopens its GPUs by UUID, in the recording's order; one
/// that cannot be opened keeps its columns, reads nothing and is one error per sample.
#[test]
fn a_recordings_gpu_that_cannot_be_reopened_keeps_its_columns_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][1]["error"] = "GPU_IS_LOST".into();
    let lib = standin(dir.path(), &state);
    let recorded = ["GPU-bbbb".to_string(), "GPU-aaaa".to_string()];
    let mut source = NvmlSource::reopen(Some(&lib), &recorded);
    assert_eq!(source.channels(), recorded);
    assert_eq!(source.gauges().len(), 20);
    assert_eq!(source.gauges()[0], "GPU-bbbb:power_mw");
    let unopened = source.unopened();
    assert_eq!(unopened.len(), 1, "{unopened:?}");
    assert!(unopened[0].starts_with("GPU GPU-bbbb: "), "{unopened:?}");
    for _ in 0..2 {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        source.read(&mut out, &mut errors);
        source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("GPU GPU-bbbb: "), "{errors:?}");
        // Energy of both GPUs, then the gauges: GPU-bbbb's all empty, GPU-aaaa's read.
        assert_eq!(out[0], None);
        assert!(out[1].is_some());
        assert!(out[2..12].iter().all(Option::is_none), "{out:?}");
        assert_eq!(out[12], Some(100_000));
    }
}

#[test]
fn a_mig_slice_that_cannot_be_reopened_keeps_its_columns_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][1]["sm_count"] = 98.into();
    state["devices"][1]["mig"] = serde_json::json!([
        { "uuid": "MIG-1111", "sm_count": 14 },
        { "uuid": "MIG-2222", "sm_count": 28, "error": "UNKNOWN" }
    ]);
    let lib = standin(dir.path(), &state);
    let recorded = ["MIG-1111".to_string(), "MIG-2222".to_string()];
    let mut source = NvmlSource::reopen(Some(&lib), &recorded);
    assert_eq!(source.channels(), recorded);
    assert_eq!(source.mig_slices(), ["MIG-1111: 0.143 of GPU-bbbb"]);
    assert_eq!(source.unopened().len(), 1);
    assert!(source.unopened()[0].contains("MIG-2222"));
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    assert!(out[0].is_some());
    assert_eq!(out[1], None);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

/// Without NVML at the takeover (driver unloaded), every GPU of the recording keeps its
/// columns, empty: the recording's other sources go on.
#[test]
fn without_nvml_at_a_takeover_every_gpu_keeps_its_columns_empty() {
    let dir = tempfile::tempdir().unwrap();
    let lib = standin(dir.path(), &two_gpus(now_ms()));
    fs::remove_file(dir.path().join("libnvidia-ml.so.json")).unwrap();
    let recorded = ["GPU-aaaa".to_string(), "GPU-bbbb".to_string()];
    let mut source = NvmlSource::reopen(Some(&lib), &recorded);
    assert_eq!(source.channels(), recorded);
    assert_eq!(source.gauges().len(), 20);
    assert_eq!(
        source.unopened(),
        [
            "GPU GPU-aaaa: NVIDIA driver not loaded",
            "GPU GPU-bbbb: NVIDIA driver not loaded"
        ]
    );
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert_eq!(out, vec![None; 22]);
    assert_eq!(errors.len(), 2, "{errors:?}");
}

/// The job's and the others' process counts and memory of a source's first GPU, after one
/// sample, with the sample's errors.
fn process_split(source: &mut NvmlSource, job: &[u32]) -> ([Option<u64>; 4], Vec<String>) {
    let job = job.to_vec();
    let find = move || Some(job.clone());
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
    ([out[3], out[4], out[5], out[6]], errors)
}

fn processes(pids: impl IntoIterator<Item = u32>) -> serde_json::Value {
    let list: Vec<_> = pids
        .into_iter()
        .map(|pid| serde_json::json!({ "pid": pid, "used_mem": u64::from(pid) << 20 }))
        .collect();
    list.into()
}

/// Row 2 of issue 17: R535 drivers before 535.98 write 32-byte `nvmlProcessInfo_v3_t`
/// entries through `nvmlDeviceGetComputeRunningProcesses_v3`, where nvml-wrapper 0.13 reads
/// 24: its pids came out scrambled (and past 15 processes it wrote beyond its buffer).
#[test]
fn process_entries_of_32_bytes_keep_their_pids() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["process_entry_bytes"] = 32.into();
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    state["devices"][0]["processes"] = processes([4242, 4243, 777]);
    write_state(dir.path(), &state);
    for _ in 0..3 {
        let (split, errors) = process_split(&mut source, &[4242, 4243]);
        assert!(errors.is_empty(), "{errors:?}");
        let (job_mem, other_mem) = ((4242 + 4243) << 20, 777 << 20);
        assert_eq!(split, [Some(2), Some(1), Some(job_mem), Some(other_mem)]);
    }
}

/// The same past the 15 processes where the wrapper's buffer overflowed, and for every
/// entry size NVML has had (16: v1, which one report has `_v3` write; 24; 32), measured at
/// open when processes run then.
#[test]
fn many_processes_are_read_whatever_the_entry_size() {
    for bytes in [16, 24, 32] {
        let dir = tempfile::tempdir().unwrap();
        let mut state = two_gpus(now_ms());
        state["process_entry_bytes"] = bytes.into();
        state["devices"][0]["processes"] = processes(1000..1040);
        let lib = standin(dir.path(), &state);
        let mut source = open(&lib, Some(&["0".to_string()]));
        let note = format!("GPU-aaaa: process entries of {bytes} bytes");
        assert_eq!(
            source.degraded(),
            if bytes == 24 { vec![] } else { vec![note] }
        );
        let job: Vec<u32> = (1000..1010).collect();
        let (split, errors) = process_split(&mut source, &job);
        assert!(errors.is_empty(), "{errors:?}");
        let mem = |pids: std::ops::Range<u64>| Some(pids.map(|p| p << 20).sum());
        assert_eq!(
            split,
            [Some(10), Some(30), mem(1000..1010), mem(1010..1040)]
        );
    }
}

/// More processes than the first buffer holds: the count protocol grows it.
#[test]
fn a_list_larger_than_the_first_buffer_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["process_entry_bytes"] = 32.into();
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    state["devices"][0]["processes"] = processes(1000..1300);
    write_state(dir.path(), &state);
    let (split, errors) = process_split(&mut source, &[1000]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(split[..2], [Some(1), Some(299)]);
}

/// An entry size no nvml.h has had cannot be confirmed: the list is not read, said once.
#[test]
fn a_process_entry_size_that_cannot_be_confirmed_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["process_entry_bytes"] = 40.into();
    // At open, with processes running: named in the metadata.
    state["devices"][0]["processes"] = processes([1, 2]);
    // Later, on the other GPU: one error, then nothing.
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    let degraded = source.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].starts_with("GPU-aaaa: process list not read (2 processes filled 80 bytes"),
        "{degraded:?}"
    );
    state["devices"][1]["processes"] = processes([3, 4]);
    write_state(dir.path(), &state);
    let (split, errors) = process_split(&mut source, &[1]);
    assert_eq!(split, [None; 4]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("GPU GPU-bbbb: processes: not read any more"));
    let (_, errors) = process_split(&mut source, &[1]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(source.degraded().len(), 2);
}

/// Row 9: `usedGpuMemory` NOT_AVAILABLE is unknown memory, not 0.
#[test]
fn a_process_whose_memory_is_not_available_leaves_its_sides_memory_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["processes"] = serde_json::json!([
        { "pid": 4242 },
        { "pid": 777, "used_mem": 2u64 << 30 }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    let (split, errors) = process_split(&mut source, &[4242]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(split, [Some(1), Some(1), None, Some(2 << 30)]);
}

/// Row 6: a GPU lost, or answering UNKNOWN, when the source opens costs only itself.
#[test]
fn a_gpu_that_fails_at_open_costs_only_itself_its_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["error"] = "GPU_IS_LOST".into();
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    assert_eq!(source.lost().len(), 1);
    assert!(
        source.lost()[0].starts_with("GPU 0: "),
        "{:?}",
        source.lost()
    );
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    assert!(out[0].is_some());
    assert!(errors.is_empty(), "{errors:?}");

    // By UUID, the handle refused.
    let mut state = two_gpus(now_ms());
    state["devices"][1]["errors"] = serde_json::json!({ "nvmlDeviceGetHandleByUUID": "UNKNOWN" });
    write_state(dir.path(), &state);
    let both = ["GPU-aaaa".to_string(), "GPU-bbbb".to_string()];
    let source = open(&lib, Some(&both));
    assert_eq!(source.channels(), ["GPU-aaaa"]);
    assert!(source.lost()[0].starts_with("GPU GPU-bbbb: "));

    // Every GPU lost: the source fails, naming each.
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetHandleByUUID": "GPU_IS_LOST" });
    write_state(dir.path(), &state);
    let err = NvmlSource::open(Some(&lib), Some(&both))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("GPU GPU-aaaa") && err.contains("GPU GPU-bbbb"),
        "{err}"
    );
}

/// An energy counter failing otherwise than NotSupported at open is the samples' to count:
/// the GPU is still opened.
#[test]
fn an_energy_counter_error_at_open_does_not_lose_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetTotalEnergyConsumption": "UNKNOWN" });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    assert_eq!(source.channels(), ["GPU-aaaa", "GPU-bbbb"]);
    assert!(source.integrated_channels().is_empty());
    state["devices"][0]["errors"] = serde_json::json!({});
    write_state(dir.path(), &state);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    assert!(out.iter().all(Option::is_some), "{out:?}");
    assert!(errors.is_empty(), "{errors:?}");
}

/// The stand-in copied into `dir` with `hidden` entry points missing, as on a driver whose
/// NVML lacks them.
fn standin_without(dir: &Path, state: &serde_json::Value, hidden: &[&str]) -> PathBuf {
    let lib = standin(dir, state);
    aipm_nvml_standin::symbols::hide_symbols(&lib, hidden).unwrap();
    lib
}

/// Row 4: drivers without `nvmlDeviceGetComputeRunningProcesses_v3` (before R510, 535.98)
/// or `nvmlDeviceGetMemoryInfo_v2` (before R510): the older calls, chosen once at open and
/// named in the metadata, not an error at every sample.
#[test]
fn an_nvml_without_the_newest_calls_falls_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["mem_reserved"] = (1u64 << 20).into();
    state["devices"][0]["processes"] = processes([4242, 777]);
    let hidden = [
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetMemoryInfo_v2",
    ];
    let lib = standin_without(dir.path(), &state, &hidden);
    let mut source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(
        source.degraded(),
        [
            "GPU-aaaa: memory from nvmlDeviceGetMemoryInfo (no _v2 in this NVML: used includes \
          reserved), processes from nvmlDeviceGetComputeRunningProcesses_v2"
        ]
    );
    for _ in 0..2 {
        let find = || Some(vec![4242]);
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        source.read(&mut Vec::new(), &mut errors);
        source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
        assert!(errors.is_empty(), "{errors:?}");
        // v1's used includes the reserved MiB.
        assert_eq!(out[2], Some((1 << 30) + (1 << 20)));
        assert_eq!(
            out[3..7],
            [Some(1), Some(1), Some(4242 << 20), Some(777 << 20)]
        );
    }

    // Neither any process call nor any memory call: named once, no errors.
    let dir = tempfile::tempdir().unwrap();
    let hidden = [
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetMemoryInfo",
    ];
    let lib = standin_without(dir.path(), &state, &hidden);
    let mut source = open(&lib, Some(&["0".to_string()]));
    let degraded = source.degraded().join("; ");
    assert!(degraded.contains("no memory in this NVML"), "{degraded}");
    assert!(
        degraded.contains("no process list in this NVML"),
        "{degraded}"
    );
    let (split, errors) = process_split(&mut source, &[4242]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(split, [None; 4]);
}

/// An A100 in MIG mode as real NVML shows it: 108 SMs, of which MIG gives its slices 98
/// (7 × 14); attributes, utilisation and process utilisation of the whole GPU not supported.
fn a100_in_mig_mode(start_ms: u64) -> serde_json::Value {
    let mut state = two_gpus(start_ms);
    state["mig_rules"] = "nvml".into();
    let gpu = &mut state["devices"][1];
    gpu["sm_count"] = 108.into();
    gpu["mig"] = serde_json::json!([
        { "uuid": "MIG-1111", "sm_count": 14 },
        { "uuid": "MIG-2222", "sm_count": 28 }
    ]);
    gpu["gpu_instance_profiles"] = serde_json::json!([
        { "id": 0, "slices": 1, "sm_count": 14, "instances": 7 },
        { "id": 1, "slices": 2, "sm_count": 28, "instances": 3 },
        { "id": 2, "slices": 3, "sm_count": 42, "instances": 2 },
        { "id": 3, "slices": 4, "sm_count": 56, "instances": 1 },
        { "id": 4, "slices": 7, "sm_count": 98, "instances": 1 }
    ]);
    state
}

/// Row 1: `nvmlDeviceGetAttributes_v2` answers only for MIG handles, so the GPU's SMs come
/// from its largest GPU-instance profile: a 2g slice gets 28 of 98, and a GPU fully
/// partitioned gives its slices all its energy.
#[test]
fn a_mig_slices_share_is_of_the_sms_mig_gives_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_ms();
    let lib = standin(dir.path(), &a100_in_mig_mode(start));
    let slices = ["MIG-2222".to_string(), "GPU-aaaa".to_string()];
    let mut source = open(&lib, Some(&slices));
    assert_eq!(source.channels(), ["MIG-2222", "GPU-aaaa"]);
    assert_eq!(source.mig_slices(), ["MIG-2222: 0.286 of GPU-bbbb"]);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(out[2], Some(250_000 * 2 / 7));
}

/// Row 10: a MIG-mode GPU named whole (by its Slurm id) answers NotSupported for
/// utilisation: not an error per sample, and the metadata says that its energy is the whole
/// GPU's.
#[test]
fn a_gpu_in_mig_mode_opened_whole_is_named_so() {
    let dir = tempfile::tempdir().unwrap();
    let lib = standin(dir.path(), &a100_in_mig_mode(now_ms()));
    let mut source = open(&lib, Some(&["1".to_string()]));
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    let degraded = source.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].starts_with(
            "GPU-bbbb: whole GPU, MIG mode: share unknown (in MIG mode but opened whole"
        ),
        "{degraded:?}"
    );
    assert_eq!(
        source.unsupported(),
        ["GPU-bbbb: utilisation, process utilisation"]
    );
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut out, &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::unknown());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(out[0].is_some());
}

/// An entry point exported but answering FUNCTION_NOT_FOUND (510.39's `_v2` memory call) is
/// as good as missing: the older one, once.
#[test]
fn an_entry_point_that_answers_function_not_found_falls_back_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["processes"] = processes([4242]);
    state["devices"][0]["errors"] = serde_json::json!({
        "nvmlDeviceGetMemoryInfo_v2": "FUNCTION_NOT_FOUND",
        "nvmlDeviceGetComputeRunningProcesses_v3": "FUNCTION_NOT_FOUND"
    });
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    let degraded = source.degraded().join("; ");
    assert!(
        degraded.contains("memory from nvmlDeviceGetMemoryInfo"),
        "{degraded}"
    );
    assert!(
        degraded.contains("processes from nvmlDeviceGetComputeRunningProcesses_v2"),
        "{degraded}"
    );
    let (split, errors) = process_split(&mut source, &[4242]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(split, [Some(1), Some(0), Some(4242 << 20), Some(0)]);
}

/// Row 5: under device cgroups (a user's `record` inside a job), nvmlDeviceGetCount counts
/// every GPU of the node but the handles of the others answer NO_PERMISSION: the job's GPU is
/// recorded, the others named.
#[test]
fn gpus_outside_the_device_cgroup_are_named_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["errors"] =
        serde_json::json!({ "nvmlDeviceGetHandleByIndex_v2": "NO_PERMISSION" });
    let lib = standin(dir.path(), &state);
    let source = open(&lib, None);
    assert_eq!(source.channels(), ["GPU-bbbb"]);
    assert_eq!(source.lost().len(), 1);
    assert!(
        source.lost()[0].starts_with("GPU 0: "),
        "{:?}",
        source.lost()
    );
}

/// The job's and the others' SM % of a source's first GPU after one sample.
fn sm_split(source: &mut NvmlSource, job: &[u32]) -> [Option<u64>; 2] {
    let job = job.to_vec();
    let find = move || Some(job.clone());
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
    assert!(errors.is_empty(), "{errors:?}");
    [out[7], out[8]]
}

/// Row 3: the driver samples per-process utilisation every 1/6 to 1 s, so a sampler period
/// shorter than that often finds no newer sample (NOT_FOUND). The last samples stand then,
/// rather than the row falling back to the memory split; 2 s later, no kernel ran.
#[test]
fn process_utilisation_between_the_drivers_samples_keeps_the_last_split() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    // One driver sample an hour: none newer after the first read.
    state["process_sample_period_ms"] = 3_600_000.into();
    state["devices"][0]["processes"] = serde_json::json!([
        { "pid": 4242, "used_mem": 1u64 << 30, "sm_util": 60 },
        { "pid": 777, "used_mem": 3u64 << 30, "sm_util": 20 }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    let first = sm_split(&mut source, &[4242]);
    assert_eq!(first, [Some(60), Some(20)]);
    assert_eq!(sm_split(&mut source, &[4242]), first);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(sm_split(&mut source, &[4242]), [Some(0), Some(0)]);
}

/// Row 3: junk samples (above 100 %) and samples of processes that have exited do not
/// count as the others' SM time.
#[test]
fn junk_and_exited_process_samples_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["processes"] = serde_json::json!([
        { "pid": 4242, "used_mem": 1u64 << 30, "sm_util": 60 },
        { "pid": 777, "used_mem": 3u64 << 30, "sm_util": 20 },
        { "pid": 999, "used_mem": 1u64 << 20, "sm_util": 2_147_483_632u64 },
        { "pid": 555, "sm_util": 50, "exited": true }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["0".to_string()]));
    assert_eq!(sm_split(&mut source, &[4242]), [Some(60), Some(20)]);
    let (split, _) = process_split(&mut source, &[4242]);
    assert_eq!(split[..2], [Some(1), Some(2)], "555 has exited");
}

/// The first checks on a real GPU node, here against the stand-in: one line per finding.
#[test]
fn the_gpu_probe_reports_layout_counter_cadence_and_mig() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = a100_in_mig_mode(now_ms());
    state["process_entry_bytes"] = 32.into();
    state["devices"][0]["energy_step_mj"] = 1000.into();
    state["devices"][0]["processes"] = serde_json::json!([
        { "pid": std::process::id(), "used_mem": 1u64 << 30, "sm_util": 50 },
        { "pid": 4_000_000, "sm_util": 250 }
    ]);
    let lib = standin(dir.path(), &state);
    let times = aipm_sampler::sources::nvml_probe::ProbeTimes {
        counter: std::time::Duration::from_millis(100),
        utilisation: std::time::Duration::from_millis(200),
    };
    let report = aipm_sampler::sources::nvml_probe::gpu_probe(Some(&lib), times);
    let has = |text: &str| report.lines().any(|l| l.contains(text));
    assert!(has("open: 2 GPU(s) counted"), "{report}");
    let me = std::process::id();
    assert!(
        has(&format!(
            "nvmlDeviceGetComputeRunningProcesses_v3 entries of 32 bytes, 2 process(es): {me} (1024 MiB), 4000000 (memory n/a, not a process here)"
        )),
        "{report}"
    );
    assert!(has("energy: GPU 0: "), "{report}");
    assert!(has("(smallest step 1000 mJ"), "{report}");
    assert!(has("junk"), "{report}");
    assert!(has("mig: GPU 1: mode 1"), "{report}");
    assert!(has("largest GPU-instance profile 98 SMs"), "{report}");
    assert!(has("slice 1 MIG-2222: 28 SMs"), "{report}");
    println!("{report}");
}

/// Row 8: on GH200 the energy counter is the whole module's (Grace CPU, memory, GPU): named.
#[test]
fn a_grace_hopper_modules_counter_is_named_as_the_modules() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    state["devices"][0]["name"] = "NVIDIA GH200 480GB".into();
    let lib = standin(dir.path(), &state);
    let source = open(&lib, None);
    let degraded = source.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].starts_with("GPU-aaaa: a Grace Hopper module: its energy counter includes"),
        "{degraded:?}"
    );
}

/// A count the driver gives back is never trusted beyond the room given: a count above the
/// capacity refuses the list (named once), and so does a list longer than the 4096 read.
#[test]
fn a_process_count_out_of_bounds_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = two_gpus(now_ms());
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, None);
    state["process_count_extra"] = 1000.into();
    state["devices"][0]["processes"] = processes([4242]);
    state["devices"][1]["processes"] = processes(10_000..15_000);
    write_state(dir.path(), &state);
    let (split, errors) = process_split(&mut source, &[4242]);
    assert_eq!(split, [None; 4]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("said it wrote 1001 processes into room for 32"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("5000 processes, more than the 4096 read"),
        "{errors:?}"
    );
    let (_, errors) = process_split(&mut source, &[4242]);
    assert!(errors.is_empty(), "named once: {errors:?}");
}

/// Row 10: on a MIG-mode GPU opened whole, per-process utilisation is not supported, but the
/// process list (all slices' processes) is read: the job's and the other slices' jobs'
/// memory split the GPU, rather than the job getting all of it.
#[test]
fn a_mig_mode_gpu_opened_whole_is_split_by_the_processes_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = a100_in_mig_mode(now_ms());
    state["process_entry_bytes"] = 32.into();
    state["devices"][1]["processes"] = serde_json::json!([
        { "pid": 4242, "used_mem": 10u64 << 30 },
        { "pid": 777, "used_mem": 30u64 << 30 }
    ]);
    let lib = standin(dir.path(), &state);
    let mut source = open(&lib, Some(&["1".to_string()]));
    let find = || Some(vec![4242]);
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    source.read(&mut Vec::new(), &mut errors);
    source.read_gauges(&mut out, &mut errors, &mut JobPids::new(&find));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        out[3..9],
        [Some(1), Some(1), Some(10 << 30), Some(30 << 30), None, None]
    );
}
