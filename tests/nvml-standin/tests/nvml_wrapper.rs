//! Drives the stand-in through the real nvml-wrapper, the way the sampler will.
//!
//! Each test copies the built library into its own tempdir as `libnvidia-ml.so`, with its
//! state in the sidecar `libnvidia-ml.so.json`: a copy at a new path is dlopen'ed separately,
//! so parallel tests do not share init counts or state.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nvml_wrapper::bitmasks::InitFlags;
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_ECC_CURRENT, NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT,
};
use nvml_wrapper::{Device, FieldIdScheme, Nvml};
use serde_json::{json, Value};
use tempfile::TempDir;

use aipm_nvml_standin::install::built_library;

fn now_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(d.as_millis()).unwrap()
}

/// A private copy of the stand-in plus its state file.
struct Fake {
    _dir: TempDir,
    lib: PathBuf,
}

impl Fake {
    /// Copies the library to `DIR/<file_name>`; no state file yet.
    fn bare(file_name: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(file_name);
        std::fs::copy(built_library(), &lib).unwrap();
        Fake { _dir: dir, lib }
    }

    fn new(state: &Value) -> Fake {
        let fake = Fake::bare("libnvidia-ml.so");
        fake.set_state(state);
        fake
    }

    fn state_path(&self) -> PathBuf {
        let mut p = self.lib.clone().into_os_string();
        p.push(".json");
        p.into()
    }

    /// Temp file + rename, so a concurrent read never sees a half-written file.
    fn set_state(&self, state: &Value) {
        write_atomically(&self.state_path(), &serde_json::to_vec(state).unwrap());
    }

    fn init(&self) -> Result<Nvml, NvmlError> {
        Nvml::builder().lib_path(self.lib.as_os_str()).init()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn gpu(uuid: &str, power_w: f64) -> Value {
    json!({
        "uuid": uuid, "name": "Fake H100", "power_w": power_w,
        "energy_start_mj": 0, "start_unix_ms": now_ms(),
    })
}

#[test]
fn enumerates_devices_by_index_and_uuid() {
    let mut second = gpu("GPU-bbbb", 50.0);
    second["name"] = json!("Fake A100");
    let fake = Fake::new(&json!({
        "driver_version": "560.35.03",
        "devices": [gpu("GPU-aaaa", 100.0), second],
    }));
    let nvml = fake.init().unwrap();

    assert_eq!(nvml.device_count().unwrap(), 2);
    assert_eq!(nvml.sys_driver_version().unwrap(), "560.35.03");
    let first = nvml.device_by_index(0).unwrap();
    assert_eq!(first.uuid().unwrap(), "GPU-aaaa");
    assert_eq!(first.name().unwrap(), "Fake H100");
    assert_eq!(first.index().unwrap(), 0);

    let by_uuid = nvml.device_by_uuid("GPU-bbbb").unwrap();
    assert_eq!(by_uuid.index().unwrap(), 1);
    assert_eq!(by_uuid.name().unwrap(), "Fake A100");

    assert!(matches!(
        nvml.device_by_uuid("GPU-none"),
        Err(NvmlError::NotFound)
    ));
    assert!(matches!(
        nvml.device_by_index(2),
        Err(NvmlError::InvalidArg)
    ));
}

#[test]
fn minor_numbers_default_to_the_index_or_are_set_per_device() {
    let (mut first, mut second) = (gpu("GPU-aaaa", 100.0), gpu("GPU-bbbb", 50.0));
    // PCI bus order against /dev/nvidiaN order, swapped.
    first["minor"] = json!(1);
    second["minor"] = json!(0);
    let swapped = Fake::new(&json!({ "devices": [first, second] }));
    let nvml = swapped.init().unwrap();
    let minor = |i| nvml.device_by_index(i).unwrap().minor_number().unwrap();
    assert_eq!((minor(0), minor(1)), (1, 0));

    let plain = Fake::new(&json!({ "devices": [gpu("GPU-aaaa", 100.0), gpu("GPU-bbbb", 50.0)] }));
    let nvml = plain.init().unwrap();
    let minor = |i| nvml.device_by_index(i).unwrap().minor_number().unwrap();
    assert_eq!((minor(0), minor(1)), (0, 1));

    // A MIG handle has no device file of its own here.
    let mig = Fake::new(&mig_state());
    let nvml = mig.init().unwrap();
    let slice = nvml.device_by_uuid("MIG-0a1b").unwrap();
    assert!(matches!(slice.minor_number(), Err(NvmlError::NotSupported)));
}

#[test]
fn energy_advances_by_power_times_elapsed() {
    let mut dev = gpu("GPU-e", 250.0);
    dev["energy_start_mj"] = json!(5_000_000);
    let fake = Fake::new(&json!({ "devices": [dev] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();

    assert_eq!(device.power_usage().unwrap(), 250_000);
    let (e0, t0) = (device.total_energy_consumption().unwrap(), Instant::now());
    assert!(
        e0 >= 5_000_000,
        "counter starts at energy_start_mj, got {e0}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (e1, t1) = (device.total_energy_consumption().unwrap(), Instant::now());

    let expected_mj = 250.0 * t1.duration_since(t0).as_secs_f64() * 1000.0;
    let got_mj = (e1 - e0) as f64;
    assert!(
        (got_mj / expected_mj - 1.0).abs() < 0.02,
        "energy advanced {got_mj} mJ, expected {expected_mj} mJ"
    );
}

/// Row 8: the true power steps from 100 W to 300 W; the counter integrates the steps, the
/// instant field follows them at once, and with `"power_average_ms"` the power reading is the
/// mean of the last second, as on Ampere and newer GPUs except GA100.
#[test]
fn power_is_a_one_second_average_where_asked_and_the_counter_follows_the_steps() {
    let start = now_ms() - 10_000;
    let mut dev = gpu("GPU-p", 100.0);
    dev["start_unix_ms"] = json!(start);
    // 300 W from 9.5 s after the start: half a second ago.
    dev["power_steps"] = json!([[9_500, 300.0]]);
    dev["power_average_ms"] = json!(1000);
    let fake = Fake::new(&json!({ "devices": [dev.clone()] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();
    let elapsed = (now_ms() - start) as f64;
    // The mean of the last second: 100 W, then 300 W for (elapsed − 9 500) ms.
    let expected = 100.0 + 200.0 * (elapsed - 9_500.0) / 1000.0;
    let reading = device.power_usage().unwrap() as f64 / 1000.0;
    assert!(
        (reading - expected).abs() < 15.0,
        "{reading} W, expected {expected} W"
    );
    let counter = device.total_energy_consumption().unwrap() as f64;
    let elapsed = (now_ms() - start) as f64;
    let expected = 100.0 * 9_500.0 + 300.0 * (elapsed - 9_500.0);
    assert!(
        (counter / expected - 1.0).abs() < 0.01,
        "{counter} mJ, {expected} mJ"
    );
    let instant = device
        .field_values_for(&[nvml_wrapper::structs::device::FieldId(186)])
        .unwrap();
    let instant = instant.into_iter().next().unwrap().unwrap().value.unwrap();
    assert!(
        matches!(
            instant,
            nvml_wrapper::enums::device::SampleValue::U32(300_000)
        ),
        "{instant:?}"
    );

    // Without the knob, the reading is the true power now: today's behaviour.
    dev.as_object_mut().unwrap().remove("power_average_ms");
    fake.set_state(&json!({ "devices": [dev] }));
    assert_eq!(device.power_usage().unwrap(), 300_000);
}

#[test]
fn state_changes_apply_without_reinit() {
    let fake = Fake::new(&json!({ "devices": [gpu("GPU-c", 100.0)] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();
    assert_eq!(device.power_usage().unwrap(), 100_000);

    // Rebase the counter at the current value, then change power, as the notes advise.
    let energy = device.total_energy_consumption().unwrap();
    let mut dev = gpu("GPU-c", 300.5);
    dev["energy_start_mj"] = json!(energy);
    fake.set_state(&json!({ "devices": [dev] }));

    assert_eq!(device.power_usage().unwrap(), 300_500);
    assert!(device.total_energy_consumption().unwrap() >= energy);
}

#[test]
fn utilisation_and_memory() {
    let mut dev = gpu("GPU-u", 100.0);
    dev["util_gpu"] = json!(87);
    dev["util_mem"] = json!(33);
    dev["mem_total"] = json!(80_000_000_000_u64);
    dev["mem_used"] = json!(20_000_000_000_u64);
    dev["mem_reserved"] = json!(500_000_000);
    let fake = Fake::new(&json!({ "devices": [dev] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();

    let util = device.utilization_rates().unwrap();
    assert_eq!((util.gpu, util.memory), (87, 33));

    let mem = device.memory_info().unwrap();
    assert_eq!(mem.total, 80_000_000_000);
    assert_eq!(mem.used, 20_000_000_000);
    assert_eq!(mem.reserved, 500_000_000);
    assert_eq!(mem.free, 59_500_000_000);
}

#[test]
fn running_compute_processes() {
    let mut busy = gpu("GPU-p", 100.0);
    busy["processes"] = json!([
        { "pid": 1234, "used_mem": 1_000_000 },
        { "pid": 5678, "used_mem": 2_000_000 },
        { "pid": 91011 },
    ]);
    let fake = Fake::new(&json!({ "devices": [busy, gpu("GPU-idle", 30.0)] }));
    let nvml = fake.init().unwrap();

    let procs = nvml
        .device_by_index(0)
        .unwrap()
        .running_compute_processes()
        .unwrap();
    let got: Vec<_> = procs
        .iter()
        .map(|p| (p.pid, p.used_gpu_memory.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (1234, UsedGpuMemory::Used(1_000_000)),
            (5678, UsedGpuMemory::Used(2_000_000)),
            (91011, UsedGpuMemory::Unavailable),
        ]
    );
    assert!(procs
        .iter()
        .all(|p| p.gpu_instance_id.is_none() && p.compute_instance_id.is_none()));

    let idle = nvml.device_by_index(1).unwrap();
    assert!(idle.running_compute_processes().unwrap().is_empty());
}

/// What R535 drivers before 535.98 do to nvml-wrapper 0.13, which gives
/// `nvmlDeviceGetComputeRunningProcesses_v3` 24 bytes per entry: 32-byte entries read as 24
/// scramble every entry after the first. (Two processes only: its buffer has room for five
/// more, so nothing is written past it here; past 15 processes it would be.)
#[test]
fn r535_entries_of_32_bytes_scramble_the_wrappers_pids() {
    let mut busy = gpu("GPU-p", 100.0);
    busy["processes"] = json!([
        { "pid": 1234, "used_mem": 1_000_000 },
        { "pid": 5678, "used_mem": 2_000_000 },
    ]);
    let fake = Fake::new(&json!({ "process_entry_bytes": 32, "devices": [busy] }));
    let nvml = fake.init().unwrap();
    let procs = nvml
        .device_by_index(0)
        .unwrap()
        .running_compute_processes()
        .unwrap();
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    assert_eq!(pids[0], 1234);
    assert_ne!(pids[1], 5678, "the second entry is read 8 bytes early");
}

/// An NVML without a symbol is a copy of the stand-in with it hidden: nvml-wrapper finds it
/// missing when it loads the library, as on an older driver.
#[test]
fn hidden_symbols_are_missing_to_the_wrapper() {
    let fake = Fake::new(&json!({ "devices": [gpu("GPU-p", 100.0)] }));
    aipm_nvml_standin::symbols::hide_symbols(
        &fake.lib,
        &[
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetMemoryInfo_v2",
        ],
    )
    .unwrap();
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();
    assert!(matches!(
        device.running_compute_processes(),
        Err(NvmlError::FailedToLoadSymbol(_))
    ));
    assert!(matches!(
        device.memory_info(),
        Err(NvmlError::FailedToLoadSymbol(_))
    ));
    assert_eq!(device.uuid().unwrap(), "GPU-p");
    let missing = aipm_nvml_standin::symbols::hide_symbols(&fake.lib, &["nvmlNoSuchCall"]);
    assert!(missing.is_err());
}

#[test]
fn process_utilization_samples_newer_than_last_seen() {
    let mut dev = gpu("GPU-s", 100.0);
    dev["processes"] = json!([
        { "pid": 1, "used_mem": 1, "sm_util": 70, "mem_util": 20, "enc_util": 1, "dec_util": 2,
          "ts_us": 1_000 },
        { "pid": 2, "used_mem": 1, "sm_util": 5, "mem_util": 3, "ts_us": 2_000 },
    ]);
    let fake = Fake::new(&json!({ "devices": [dev, gpu("GPU-idle", 30.0)] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();

    let all = device.process_utilization_stats(None).unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.pid,
                s.timestamp,
                s.sm_util,
                s.mem_util,
                s.enc_util,
                s.dec_util,
            )
        })
        .collect();
    assert_eq!(got, [(1, 1_000, 70, 20, 1, 2), (2, 2_000, 5, 3, 0, 0)]);

    let newer = device.process_utilization_stats(1_000).unwrap();
    assert_eq!(newer.iter().map(|s| s.pid).collect::<Vec<_>>(), [2]);

    // Real NVML answers NOT_FOUND when nothing is newer than last_seen.
    assert!(matches!(
        device.process_utilization_stats(2_000),
        Err(NvmlError::NotFound)
    ));
    let idle = nvml.device_by_index(1).unwrap();
    assert!(matches!(
        idle.process_utilization_stats(None),
        Err(NvmlError::NotFound)
    ));
}

#[test]
fn injected_device_errors() {
    let mut lost = gpu("GPU-lost", 100.0);
    lost["error"] = json!("GPU_IS_LOST");
    let mut flaky = gpu("GPU-flaky", 100.0);
    flaky["errors"] = json!({
        "nvmlDeviceGetPowerUsage": "NVML_ERROR_NOT_SUPPORTED",
        "nvmlDeviceGetUtilizationRates": 23,
    });
    let fake = Fake::new(&json!({ "devices": [lost, flaky] }));
    let nvml = fake.init().unwrap();

    // A lost GPU still has a handle; everything asked of it fails.
    let lost = nvml.device_by_index(0).unwrap();
    assert!(matches!(
        lost.total_energy_consumption(),
        Err(NvmlError::GpuLost)
    ));
    assert!(matches!(lost.power_usage(), Err(NvmlError::GpuLost)));
    assert!(matches!(lost.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(
        lost.running_compute_processes(),
        Err(NvmlError::GpuLost)
    ));
    assert!(matches!(
        nvml.device_by_uuid("GPU-lost"),
        Err(NvmlError::GpuLost)
    ));

    // The errors map fails only the functions it names.
    let flaky = nvml.device_by_index(1).unwrap();
    assert!(matches!(flaky.power_usage(), Err(NvmlError::NotSupported)));
    assert!(matches!(
        flaky.utilization_rates(),
        Err(NvmlError::UnexpectedVariant(23))
    ));
    assert!(flaky.total_energy_consumption().is_ok());
}

/// `[POWER_INSTANT, POWER_AVERAGE]`, as the sampler asks for them.
fn power_fields() -> [FieldId; 2] {
    [
        FieldId(NVML_FI_DEV_POWER_INSTANT),
        FieldId(NVML_FI_DEV_POWER_AVERAGE),
    ]
}

/// The milliwatts of one successful field sample.
fn mw(sample: &Result<FieldValueSample, NvmlError>) -> u32 {
    match sample {
        Ok(FieldValueSample {
            value: Ok(SampleValue::U32(mw)),
            ..
        }) => *mw,
        other => panic!("expected a U32 sample, got {other:?}"),
    }
}

fn power_fields_of(device: &Device) -> (u32, u32) {
    let fields = device.field_values_for(&power_fields()).unwrap();
    assert_eq!(fields.len(), 2);
    (mw(&fields[0]), mw(&fields[1]))
}

#[test]
fn field_values_instant_and_average_power() {
    let mut spiky = gpu("GPU-f", 250.0);
    spiky["power_instant_w"] = json!(310.0);
    let state = json!({ "devices": [spiky, gpu("GPU-steady", 99.9996)] });
    let fake = Fake::new(&state);
    let nvml = fake.init().unwrap();
    // The default driver_version 550.54.15 is below 580.82: the V12 numbering.
    assert_eq!(nvml.field_id_scheme(), FieldIdScheme::V12);
    let device = nvml.device_by_index(0).unwrap();

    let before_us = i64::try_from(now_ms() * 1000).unwrap();
    let fields = device.field_values_for(&power_fields()).unwrap();
    let after_us = i64::try_from((now_ms() + 1) * 1000).unwrap();
    assert_eq!((mw(&fields[0]), mw(&fields[1])), (310_000, 250_000));
    for (sample, id) in fields.iter().zip(power_fields()) {
        let sample = sample.as_ref().unwrap();
        assert_eq!(sample.field, id);
        assert_eq!(sample.latency, 0);
        assert!(
            (before_us..=after_us).contains(&sample.timestamp),
            "timestamp {} µs not within the call",
            sample.timestamp
        );
    }
    // nvmlDeviceGetPowerUsage stays the average.
    assert_eq!(device.power_usage().unwrap(), 250_000);

    // Without power_instant_w, the instant power is power_w, rounded to mW.
    let steady = nvml.device_by_index(1).unwrap();
    assert_eq!(power_fields_of(&steady), (100_000, 100_000));
    assert!(steady.field_values_for(&[]).unwrap().is_empty());

    // Drivers >= 580.82 get the V13Update1 numbering, which leaves ids 185 and 186 alone.
    let mut state = state;
    state["driver_version"] = json!("580.82.07");
    let fake = Fake::new(&state);
    let nvml = fake.init().unwrap();
    assert_eq!(nvml.field_id_scheme(), FieldIdScheme::V13Update1);
    let device = nvml.device_by_index(0).unwrap();
    assert_eq!(power_fields_of(&device), (310_000, 250_000));
}

#[test]
fn field_values_unknown_or_failed_fields_fail_alone() {
    let mut dev = gpu("GPU-u", 200.0);
    dev["power_instant_w"] = json!(210.0);
    let fake = Fake::new(&json!({ "devices": [dev.clone()] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();

    let fields = device
        .field_values_for(&[
            FieldId(NVML_FI_DEV_ECC_CURRENT),
            FieldId(NVML_FI_DEV_POWER_INSTANT),
            FieldId(9999),
            FieldId(NVML_FI_DEV_POWER_AVERAGE),
        ])
        .unwrap();
    assert_eq!(fields.len(), 4);
    for unknown in [&fields[0], &fields[2]] {
        let sample = unknown.as_ref().unwrap();
        assert!(matches!(sample.value, Err(NvmlError::NotSupported)));
    }
    assert_eq!(fields[2].as_ref().unwrap().field, FieldId(9999));
    assert_eq!((mw(&fields[1]), mw(&fields[3])), (210_000, 200_000));

    // "field_errors" fails single fields: a driver or GPU without instant power.
    dev["field_errors"] = json!({ "186": "NOT_SUPPORTED" });
    fake.set_state(&json!({ "devices": [dev] }));
    let fields = device.field_values_for(&power_fields()).unwrap();
    assert!(matches!(
        fields[0].as_ref().unwrap().value,
        Err(NvmlError::NotSupported)
    ));
    assert_eq!(mw(&fields[1]), 200_000);
}

#[test]
fn field_values_injected_call_errors() {
    let mut flaky = gpu("GPU-fe", 100.0);
    flaky["errors"] = json!({ "nvmlDeviceGetFieldValues": "GPU_IS_LOST" });
    let fake = Fake::new(&json!({ "devices": [flaky, gpu("GPU-ok", 100.0)] }));
    let nvml = fake.init().unwrap();

    let flaky = nvml.device_by_index(0).unwrap();
    assert!(matches!(
        flaky.field_values_for(&power_fields()),
        Err(NvmlError::GpuLost)
    ));
    assert_eq!(flaky.power_usage().unwrap(), 100_000);
    let ok = nvml.device_by_index(1).unwrap();
    assert_eq!(power_fields_of(&ok), (100_000, 100_000));

    // The top-level map and a device's blanket "error" fail the call as well.
    fake.set_state(&json!({
        "errors": { "nvmlDeviceGetFieldValues": "UNKNOWN" },
        "devices": [gpu("GPU-fe", 100.0), gpu("GPU-ok", 100.0)],
    }));
    assert!(matches!(
        ok.field_values_for(&power_fields()),
        Err(NvmlError::Unknown)
    ));
    let mut lost = gpu("GPU-fe", 100.0);
    lost["error"] = json!("GPU_IS_LOST");
    fake.set_state(&json!({ "devices": [lost, gpu("GPU-ok", 100.0)] }));
    assert!(matches!(
        flaky.field_values_for(&power_fields()),
        Err(NvmlError::GpuLost)
    ));
    assert_eq!(power_fields_of(&ok), (100_000, 100_000));
}

#[test]
fn gpu_lost_while_loaded() {
    let fake = Fake::new(&json!({ "devices": [gpu("GPU-x", 100.0)] }));
    let nvml = fake.init().unwrap();
    let device = nvml.device_by_index(0).unwrap();
    assert!(device.total_energy_consumption().is_ok());

    let mut dev = gpu("GPU-x", 100.0);
    dev["error"] = json!(15);
    fake.set_state(&json!({ "devices": [dev] }));
    assert!(matches!(
        device.total_energy_consumption(),
        Err(NvmlError::GpuLost)
    ));
}

fn mig(uuid: &str, sm_count: u32) -> Value {
    json!({ "uuid": uuid, "sm_count": sm_count })
}

/// A 98-SM GPU split into a 14-SM and a 28-SM MIG slice, after a plain GPU.
fn mig_state() -> Value {
    let mut parent = gpu("GPU-mig", 300.0);
    parent["sm_count"] = json!(98);
    parent["mem_total"] = json!(80_u64 << 30);
    parent["mig"] = json!([mig("MIG-0a1b", 14), mig("MIG-2c3d", 28)]);
    json!({ "devices": [gpu("GPU-plain", 100.0), parent] })
}

#[test]
fn mig_devices_by_uuid_and_their_parent() {
    let fake = Fake::new(&mig_state());
    let nvml = fake.init().unwrap();
    // MIG devices are not enumerated by index, as in real NVML.
    assert_eq!(nvml.device_count().unwrap(), 2);

    let small = nvml.device_by_uuid("MIG-0a1b").unwrap();
    let large = nvml.device_by_uuid("MIG-2c3d").unwrap();
    assert!(small.mig_is_mig_device_handle().unwrap());
    assert!(large.mig_is_mig_device_handle().unwrap());
    assert_eq!(small.uuid().unwrap(), "MIG-0a1b");
    assert_eq!(large.uuid().unwrap(), "MIG-2c3d");

    let parent = small.mig_parent_device().unwrap();
    assert_eq!(parent.uuid().unwrap(), "GPU-mig");
    assert_eq!(parent.index().unwrap(), 1);
    assert!(!parent.mig_is_mig_device_handle().unwrap());
    assert_eq!(
        large.mig_parent_device().unwrap().uuid().unwrap(),
        "GPU-mig"
    );

    let sm = |d: &nvml_wrapper::Device| d.attributes().unwrap().multiprocessor_count;
    assert_eq!((sm(&small), sm(&large), sm(&parent)), (14, 28, 98));
    assert_eq!(parent.attributes().unwrap().memory_size_mb, 80 << 10);
    assert_eq!(small.attributes().unwrap().memory_size_mb, 0);

    // Energy and power are the whole GPU's: real NVML does not split them per slice.
    let fields = small.field_values_for(&power_fields()).unwrap();
    assert_eq!(fields.len(), 2);
    assert!(fields
        .iter()
        .all(|f| matches!(f, Ok(s) if matches!(s.value, Err(NvmlError::NotSupported)))));
    assert_eq!(
        mw(&parent.field_values_for(&power_fields()).unwrap()[0]),
        300_000
    );
    assert!(matches!(
        small.total_energy_consumption(),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(small.power_usage(), Err(NvmlError::NotSupported)));
    assert!(matches!(small.index(), Err(NvmlError::NotSupported)));
    assert!(parent.total_energy_consumption().is_ok());
    assert_eq!(parent.power_usage().unwrap(), 300_000);

    assert!(matches!(
        nvml.device_by_uuid("MIG-none"),
        Err(NvmlError::NotFound)
    ));

    // A whole GPU: no MIG handle, no parent, default SM count.
    let plain = nvml.device_by_index(0).unwrap();
    assert!(!plain.mig_is_mig_device_handle().unwrap());
    assert!(matches!(
        plain.mig_parent_device(),
        Err(NvmlError::InvalidArg)
    ));
    assert_eq!(sm(&plain), 132);
}

#[test]
fn mig_devices_by_index_on_their_parent() {
    let mut state = mig_state();
    state["devices"][1]["max_mig_count"] = json!(7);
    let fake = Fake::new(&state);
    let nvml = fake.init().unwrap();

    let parent = nvml.device_by_uuid("GPU-mig").unwrap();
    // The maximum, not the number populated: the empty slots are NOT_FOUND.
    assert_eq!(parent.mig_device_count().unwrap(), 7);
    let second = parent.mig_device_by_index(1).unwrap();
    assert_eq!(second.uuid().unwrap(), "MIG-2c3d");
    assert_eq!(second.attributes().unwrap().multiprocessor_count, 28);
    assert_eq!(
        second.mig_parent_device().unwrap().uuid().unwrap(),
        "GPU-mig"
    );
    assert!(matches!(
        parent.mig_device_by_index(2),
        Err(NvmlError::NotFound)
    ));
    assert!(matches!(
        second.mig_device_count(),
        Err(NvmlError::NotSupported)
    ));

    // Outside MIG mode: no MIG devices.
    let plain = nvml.device_by_index(0).unwrap();
    assert_eq!(plain.mig_device_count().unwrap(), 0);
    assert!(matches!(
        plain.mig_device_by_index(0),
        Err(NvmlError::NotSupported)
    ));
}

#[test]
fn mig_devices_share_their_gpus_errors() {
    let fake = Fake::new(&mig_state());
    let nvml = fake.init().unwrap();
    let small = nvml.device_by_uuid("MIG-0a1b").unwrap();
    let large = nvml.device_by_uuid("MIG-2c3d").unwrap();

    // A slice's own errors map fails only that slice.
    let mut state = mig_state();
    state["devices"][1]["mig"][0]["errors"] = json!({ "nvmlDeviceGetAttributes_v2": "UNKNOWN" });
    fake.set_state(&state);
    assert!(matches!(small.attributes(), Err(NvmlError::Unknown)));
    assert_eq!(large.attributes().unwrap().multiprocessor_count, 28);

    // A lost GPU loses its slices.
    let mut state = mig_state();
    state["devices"][1]["error"] = json!("GPU_IS_LOST");
    fake.set_state(&state);
    assert!(matches!(small.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(small.mig_parent_device(), Err(NvmlError::GpuLost)));
    assert!(matches!(
        nvml.device_by_uuid("MIG-2c3d"),
        Err(NvmlError::GpuLost)
    ));

    // A slice that is gone leaves a stale handle.
    let mut state = mig_state();
    state["devices"][1]["mig"] = json!([mig("MIG-0a1b", 14)]);
    fake.set_state(&state);
    assert_eq!(small.uuid().unwrap(), "MIG-0a1b");
    assert!(matches!(large.uuid(), Err(NvmlError::InvalidArg)));
}

#[test]
fn injected_top_level_errors() {
    let fake = Fake::new(&json!({
        "errors": { "nvmlInit_v2": "DRIVER_NOT_LOADED" },
        "devices": [gpu("GPU-t", 100.0)],
    }));
    assert!(matches!(fake.init(), Err(NvmlError::DriverNotLoaded)));

    // Only nvmlInit_v2 was failed: init with flags goes through nvmlInitWithFlags.
    let nvml = Nvml::builder()
        .lib_path(fake.lib.as_os_str())
        .flags(InitFlags::NO_GPUS)
        .init()
        .unwrap();
    assert_eq!(nvml.device_count().unwrap(), 1);

    fake.set_state(&json!({
        "errors": { "nvmlDeviceGetCount_v2": "UNKNOWN" },
        "devices": [gpu("GPU-t", 100.0)],
    }));
    assert!(matches!(nvml.device_count(), Err(NvmlError::Unknown)));
}

#[test]
fn missing_or_bad_state_file() {
    let fake = Fake::bare("libnvidia-ml.so");
    assert!(matches!(fake.init(), Err(NvmlError::DriverNotLoaded)));

    write_atomically(&fake.state_path(), b"{ not json");
    assert!(matches!(fake.init(), Err(NvmlError::Unknown)));

    // State removed while loaded: the driver is gone.
    fake.set_state(&json!({ "devices": [gpu("GPU-m", 100.0)] }));
    let nvml = fake.init().unwrap();
    std::fs::remove_file(fake.state_path()).unwrap();
    assert!(matches!(
        nvml.device_count(),
        Err(NvmlError::DriverNotLoaded)
    ));
}

#[test]
fn init_is_reference_counted() {
    let fake = Fake::new(&json!({ "devices": [gpu("GPU-r", 100.0)] }));
    // Both handles share the one dlopen'ed copy of the library at this path.
    let first = fake.init().unwrap();
    let second = fake.init().unwrap();
    first.shutdown().unwrap();
    assert_eq!(second.device_count().unwrap(), 1);
    second.shutdown().unwrap();
}

/// Runs `child_reads_state` in a child test process with the given environment.
fn run_child(configure: impl FnOnce(&mut Command)) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_reads_state",
        "--exact",
        "--ignored",
        "--test-threads=1",
    ]);
    cmd.env_remove("AIPM_FAKE_NVML").env_remove("AIPM_TEST_LIB");
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Child half of the two tests below (it needs per-process environment):
/// loads `$AIPM_TEST_LIB`, or the default `libnvidia-ml.so.1` when that is unset.
#[test]
#[ignore = "run as a child process by the tests below"]
fn child_reads_state() {
    let nvml = match std::env::var_os("AIPM_TEST_LIB") {
        Some(lib) => Nvml::builder().lib_path(&lib).init(),
        None => Nvml::init(),
    };
    let nvml = nvml.unwrap();
    assert_eq!(nvml.device_count().unwrap(), 1);
    assert_eq!(
        nvml.device_by_index(0).unwrap().uuid().unwrap(),
        "GPU-child"
    );
}

#[test]
fn state_path_from_env_var() {
    // No sidecar: the state must come from $AIPM_FAKE_NVML.
    let fake = Fake::bare("libnvidia-ml.so");
    let state = fake.lib.with_file_name("elsewhere.json");
    let bytes = serde_json::to_vec(&json!({ "devices": [gpu("GPU-child", 1.0)] })).unwrap();
    write_atomically(&state, &bytes);
    run_child(|cmd| {
        cmd.env("AIPM_TEST_LIB", &fake.lib)
            .env("AIPM_FAKE_NVML", &state);
    });
}

#[test]
fn default_library_name_via_ld_library_path() {
    let fake = Fake::bare("libnvidia-ml.so.1");
    fake.set_state(&json!({ "devices": [gpu("GPU-child", 1.0)] }));
    let dir: &OsStr = fake.lib.parent().unwrap().as_os_str();
    run_child(|cmd| {
        cmd.env("LD_LIBRARY_PATH", dir);
    });
}
