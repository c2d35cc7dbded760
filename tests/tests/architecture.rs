//! The rules of `docs/architecture.md` on what must never depend on what, read off cargo's own
//! dependency graph, so that a new dependency that breaks one fails here, not in production
//! (polars in slurmstepd, a subcommand in the format).

use std::process::Command;

/// Every crate `package` is built with (normal dependencies, this machine's target), by
/// package name, itself included.
fn dependencies_of(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--edges", "normal", "--prefix", "none", "--package"])
        .arg(package)
        .args(["--format", "{p}"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.iter().any(|n| n == package),
        "{package} not in its own tree: {names:?}"
    );
    names
}

/// The crates of `forbidden` (exact names, or prefixes ending in `*`) that `package` depends on.
fn forbidden_in(package: &str, forbidden: &[&str]) -> Vec<String> {
    dependencies_of(package)
        .into_iter()
        .filter(|name| {
            forbidden.iter().any(|f| match f.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == f,
            })
        })
        .collect()
}

#[test]
fn the_plugin_in_slurmstepd_never_links_the_cli_polars_or_an_argument_parser() {
    let found = forbidden_in(
        "aipm-spank",
        &[
            "aipm-analyze",
            "aipm-omegawatt",
            "polars*",
            "arrow*",
            "clap",
            "zip",
            "resvg",
        ],
    );
    assert!(found.is_empty(), "the plugin depends on {found:?}");
}

#[test]
fn the_format_depends_on_no_reader_writer_subcommand_or_slurm() {
    let found = forbidden_in(
        "aipm-recording",
        &["aipm-*", "polars*", "clap", "bindgen", "nvml-wrapper"],
    )
    .into_iter()
    .filter(|name| name != "aipm-recording")
    .collect::<Vec<_>>();
    assert!(found.is_empty(), "the format depends on {found:?}");
}

#[test]
fn the_sampler_depends_on_the_format_only_among_aipm_crates_and_never_on_polars() {
    let found = forbidden_in(
        "aipm-sampler",
        &[
            "aipm-analyze",
            "aipm-omegawatt",
            "aipm-spank",
            "polars*",
            "clap",
        ],
    );
    assert!(found.is_empty(), "the sampler depends on {found:?}");
}

#[test]
fn the_wall_meter_library_knows_nothing_of_the_cli_the_sampler_or_slurm() {
    let found = forbidden_in(
        "aipm-omegawatt",
        &[
            "aipm-analyze",
            "aipm-sampler",
            "aipm-spank",
            "clap",
            "bindgen",
        ],
    );
    assert!(found.is_empty(), "aipm-omegawatt depends on {found:?}");
}

/// The rules above must be able to fail: the CLI does depend on what the plugin must not.
#[test]
fn the_graph_read_is_the_real_one() {
    let cli = dependencies_of("aipm-analyze");
    for expected in [
        "aipm-omegawatt",
        "aipm-sampler",
        "aipm-recording",
        "polars",
        "clap",
    ] {
        assert!(
            cli.iter().any(|n| n == expected),
            "{expected} not in {cli:?}"
        );
    }
}
