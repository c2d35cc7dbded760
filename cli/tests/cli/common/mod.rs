//! Helpers shared by the command-line tests.

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_aipm-analyze");

/// `aipm-analyze ARGS`, with local time set to UTC so that the tests' times read the same
/// everywhere.
pub fn aipm(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

/// The JSON a run printed; the run must have succeeded.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the stand-in NVML library in `dir`, as `libnvidia-ml.so`, with `state` as its
/// sidecar JSON: each copy is loaded on its own, so tests can run in parallel.
pub fn standin_nvml(dir: &Path, state: &serde_json::Value) -> std::path::PathBuf {
    aipm_nvml_standin::install::install(dir, state)
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Width and height of a PNG (from its header) or an SVG (as a renderer reads it); panics if
/// the file is neither a valid PNG nor a valid SVG.
pub fn image_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "png") {
        assert_eq!(
            &bytes[..8],
            b"\x89PNG\r\n\x1a\n",
            "{}: not a PNG",
            path.display()
        );
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        // A PNG that decodes: its pixels are all there.
        let decoded = resvg::tiny_skia::Pixmap::decode_png(&bytes).expect("a decodable PNG");
        assert_eq!((decoded.width(), decoded.height()), (be(16), be(20)));
        (be(16), be(20))
    } else {
        let text = String::from_utf8(bytes).unwrap();
        let tree = resvg::usvg::Tree::from_str(&text, &resvg::usvg::Options::default())
            .expect("a valid SVG");
        let size = tree.size().to_int_size();
        (size.width(), size.height())
    }
}

/// The tests' made-up users (alice 4201, bob 4202, carol 4203, mallory 12345), which
/// `aipm-analyze` (a debug build) takes as the system's: a recording's user is its job
/// directory's owner, by the system's name for that uid.
pub const PASSWD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/common/passwd");

/// The uid and gid of a made-up user; also hands the user list to every `aipm-analyze`
/// these tests start (children inherit the environment).
pub fn test_user(name: &str) -> Option<(u32, u32)> {
    std::env::set_var("AIPM_TEST_PASSWD", PASSWD);
    std::fs::read_to_string(PASSWD)
        .unwrap()
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f[0] == name).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
}

/// Write a recording into `spool` as the plugin lays it out: `JOB/NODE.samples.csv` with
/// `channels` (energy counters) and `gauges`, and `JOB/NODE.meta.json` from `meta`, the
/// directory and files given to the meta's user where it is one of the made-up users
/// (with its uid in the metadata, as the plugin writes it).
pub fn write_recording(
    spool: &Path,
    meta: &aipm_recording::meta::Meta,
    channels: &[&str],
    gauges: &[&str],
    rows: impl IntoIterator<Item = aipm_recording::samples::SampleRow>,
) {
    let dir = spool.join(meta.job_id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut text = aipm_recording::samples::header_line(&owned(channels), &owned(gauges));
    for row in rows {
        row.format_into(&mut text);
    }
    let mut meta = meta.clone();
    let owner = test_user(&meta.user);
    if let Some((uid, gid)) = owner {
        (meta.uid, meta.gid) = (uid, gid);
    }
    let samples = dir.join(format!("{}.samples.csv", meta.node));
    let meta_file = dir.join(format!("{}.meta.json", meta.node));
    std::fs::write(&samples, text).unwrap();
    std::fs::write(&meta_file, meta.to_json()).unwrap();
    if let Some((uid, gid)) = owner {
        for path in [&dir, &samples, &meta_file] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }
}

/// A sample of one package counter: `energy_uj` at `time_ms`, the job alone on its node.
pub fn package_sample(time_ms: u64, energy_uj: u64) -> aipm_recording::samples::SampleRow {
    aipm_recording::samples::SampleRow {
        time_unix_ms: time_ms,
        node_jobs: Some(1),
        energy: vec![Some(aipm_recording::samples::EnergyValue {
            energy_uj,
            raw: 0,
        })],
        ..aipm_recording::samples::SampleRow::default()
    }
}

/// `omegawatt generate … --zip ZIP`: a generated wall-meter archive; `extra` adds
/// `--power` profiles and faults. The run must succeed.
pub fn generate_archive(
    zip: &Path,
    plugs: u32,
    rate: u32,
    seconds: u64,
    start: u64,
    extra: &[&str],
) {
    let (plugs, rate, seconds, start) = (
        plugs.to_string(),
        rate.to_string(),
        seconds.to_string(),
        start.to_string(),
    );
    let mut args = vec![
        "omegawatt",
        "generate",
        "--plugs",
        &plugs,
        "--rate",
        &rate,
        "--seconds",
        &seconds,
        "--start",
        &start,
        "--zip",
        s(zip),
    ];
    args.extend_from_slice(extra);
    let out = aipm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
