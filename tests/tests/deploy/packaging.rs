//! Packages (issue 16 item 4): the man pages and completions each binary writes with
//! `--generate-assets DIR` (rserpool-cli-assets), the `[package.metadata.deb]` tables of
//! enrp-server, proxy-pe and legacy-daemon (every asset exists or is generated; units,
//! conffiles, drop-ins consistent with the units in deploy/), the registrar's multi-stage
//! Containerfile (docker cannot run here: every COPY source exists and the binary names
//! match), and — only where `cargo deb` is installed — a built package's contents.

use crate::root;
use rserpool_tests::cmd::stdout_of;
use rserpool_tests::fs::target_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The four binaries with a clap CLI, built (debug) once per test run.
fn binary(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "enrp-server",
                "-p",
                "proxy-pe",
                "-p",
                "legacy-daemon",
                "-p",
                "rsp-tools",
                "--bins",
            ])
            .current_dir(root())
            .status()
            .expect("cargo build");
        assert!(st.success(), "building the binaries failed");
    });
    target_dir().join(name)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pkg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `name --generate-assets dir`; returns the files it printed.
fn generate(name: &str, dir: &Path) -> Vec<PathBuf> {
    stdout_of(
        Command::new(binary(name)).arg("--generate-assets").arg(dir),
        name,
    )
    .lines()
    .map(PathBuf::from)
    .collect()
}

/// Long options `--help` lists (every `--name` at the start of an option line).
fn long_options(help: &str) -> Vec<String> {
    let mut v: Vec<String> = help
        .lines()
        .filter_map(|l| {
            // "  -c, --config <PATH>  ..." or "      --once  ..."
            let l = l.trim_start();
            let rest = l.strip_prefix("--").or_else(|| {
                l.strip_prefix('-')
                    .and_then(|r| r.split_once(", --").map(|x| x.1))
            })?;
            Some(
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .filter(|o| !o.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn man_pages_and_completions_cover_every_option() {
    // (binary, subcommand pages expected, a subcommand whose own options are checked)
    let cases: [(&str, &[&str], Option<&str>); 4] = [
        ("enrp-server", &[], None),
        ("legacy-daemon", &[], None),
        (
            "proxy-pe",
            &[
                "run",
                "check",
                "status",
                "push-config",
                "disable",
                "enable",
                "drain",
                "maintenance",
            ],
            Some("run"),
        ),
        ("rsp", &["hsdump", "resolve"], Some("hsdump")),
    ];
    for (name, subs, deep) in cases {
        let dir = tmp(name);
        let files = generate(name, &dir);
        let man = dir.join(format!("man/{name}.1"));
        assert!(files.contains(&man), "{name}: {files:?}");
        for s in subs {
            assert!(
                files.contains(&dir.join(format!("man/{name}-{s}.1"))),
                "{name}: no page for {s}: {files:?}"
            );
        }
        let page = std::fs::read_to_string(&man).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        let version = env!("CARGO_PKG_VERSION");
        assert!(page.contains(version), "{name}: version missing");
        // Every option of --help is in the man page and the completions.
        let help = |args: &[&str]| {
            let out = Command::new(binary(name)).args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let bash = std::fs::read_to_string(dir.join(format!("completions/{name}.bash"))).unwrap();
        let zsh = std::fs::read_to_string(dir.join(format!("completions/_{name}"))).unwrap();
        let fish = std::fs::read_to_string(dir.join(format!("completions/{name}.fish"))).unwrap();
        assert!(
            zsh.starts_with(&format!("#compdef {name}")),
            "{name}: {zsh}"
        );
        let mut checks = vec![(help(&["--help"]), page.clone())];
        if let Some(s) = deep {
            let sub_page = std::fs::read_to_string(dir.join(format!("man/{name}-{s}.1"))).unwrap();
            // The synopsis shows the full command line, `proxy-pe run`.
            let synopsis = format!(
                "\\fB{} {}\\fR",
                name.replace('-', "\\-"),
                s.replace('-', "\\-")
            );
            assert!(sub_page.contains(&synopsis), "{name} {s}: {sub_page}");
            checks.push((help(&[s, "--help"]), sub_page));
        }
        for (h, p) in checks {
            let opts = long_options(&h);
            assert!(!opts.is_empty(), "{name}: no options parsed from {h}");
            for o in opts {
                for (text, form, what) in [
                    (
                        &p,
                        format!("\\-\\-{}", o.replace('-', "\\-")),
                        "the man page",
                    ),
                    (&bash, format!("--{o}"), "bash"),
                    (&fish, format!("-l {o}"), "fish"),
                ] {
                    assert!(text.contains(&form), "{name}: --{o} not in {what}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The metrics option is documented everywhere it exists.
    let dir = tmp("metrics-opt");
    generate("legacy-daemon", &dir);
    let page = std::fs::read_to_string(dir.join("man/legacy-daemon.1")).unwrap();
    assert!(page.contains("\\-\\-metrics"), "{page}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_assets_reports_an_unwritable_directory() {
    let out = Command::new(binary("proxy-pe"))
        .args(["--generate-assets", "/proc/version/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write assets under /proc/version/x"),
        "{err}"
    );
    assert!(err.contains("choose a writable one"), "{err}");
}

const PACKAGES: [&str; 3] = ["enrp-server", "proxy-pe", "legacy-daemon"];

fn manifest(krate: &str) -> toml::Table {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    text.parse().expect("Cargo.toml")
}

fn deb(m: &toml::Table) -> &toml::Table {
    m["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
}

/// `[[bin]]` names of a manifest (the package name when there is no `[[bin]]` table).
fn bins(m: &toml::Table) -> Vec<String> {
    match m.get("bin").and_then(|b| b.as_array()) {
        Some(a) => a
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect(),
        None => vec![m["package"]["name"].as_str().unwrap().to_string()],
    }
}

#[test]
fn deb_metadata_assets_exist_and_match_the_units() {
    for krate in PACKAGES {
        let m = manifest(krate);
        let d = deb(&m);
        let dir = root().join(krate);
        // Generated assets go where the tables expect them (as the README's recipe does).
        let generated = root().join("target/assets").join(krate);
        generate(krate, &generated);
        let assets = d["assets"].as_array().expect("assets");
        let mut dests = Vec::new();
        let has = |what: &str| assets.iter().any(|a| a[1].as_str().unwrap().contains(what));
        for what in [
            "usr/share/man/man1/",
            "bash-completion",
            "zsh/vendor-completions",
            "fish/vendor_completions.d",
            "monitoring/",
            "usr/share/doc/",
        ] {
            assert!(has(what), "{krate}: no asset for {what}");
        }
        for a in assets {
            let a = a.as_array().expect("[src, dest, mode]");
            let (src, dest, mode) = (
                a[0].as_str().unwrap(),
                a[1].as_str().unwrap(),
                a[2].as_str().unwrap(),
            );
            assert!(mode == "644" || mode == "755", "{krate}: mode {mode}");
            assert!(!dest.starts_with('/'), "{krate}: {dest}");
            dests.push(dest.to_string());
            if let Some(bin) = src.strip_prefix("target/release/") {
                assert!(
                    bins(&m).contains(&bin.to_string()),
                    "{krate}: no binary {bin}"
                );
                assert_eq!(mode, "755");
                continue;
            }
            // Globs: at least one match in the directory.
            let p = dir.join(src);
            if let Some(pattern) = p
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.contains('*'))
            {
                let suffix = pattern.trim_start_matches('*');
                let n = std::fs::read_dir(p.parent().unwrap())
                    .unwrap_or_else(|e| panic!("{krate}: {src}: {e}"))
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                    .count();
                assert!(n >= 1, "{krate}: {src} matches nothing");
            } else {
                assert!(
                    p.is_file(),
                    "{krate}: asset {src} missing ({})",
                    p.display()
                );
            }
        }
        // Every conffile is installed by an asset.
        for c in d["conf-files"].as_array().unwrap() {
            let c = c.as_str().unwrap();
            assert!(
                dests.iter().any(|x| format!("/{x}") == c),
                "{krate}: conffile {c} not installed"
            );
        }
        // The unit comes from deploy/ and the drop-in moves its binary to /usr/(s)bin.
        let units = d["systemd-units"]["unit-scripts"].as_str().unwrap();
        let unit = std::fs::read_to_string(dir.join(units).join(format!("{krate}.service")))
            .expect("unit in unit-scripts dir");
        let dropin = std::fs::read_to_string(dir.join("deploy/debian/usr-bin.conf")).unwrap();
        let bin_dest = assets
            .iter()
            .find(|a| a[0].as_str().unwrap().starts_with("target/release/"))
            .map(|a| a[1].as_str().unwrap().to_string())
            .unwrap();
        let mut moved = 0;
        for line in unit.lines().filter(|l| l.starts_with("ExecStart")) {
            let (key, _) = line.split_once('=').unwrap();
            let want = line
                .replace("/usr/local/sbin/", &format!("/{bin_dest}"))
                .replace("/usr/local/bin/", &format!("/{bin_dest}"));
            assert!(
                dropin.contains(&format!("{key}=\n{want}\n")),
                "{krate}: drop-in lacks {want}"
            );
            assert!(
                want.contains(&format!("/{bin_dest}{krate} ")),
                "{krate}: {want} does not run the packaged binary"
            );
            moved += 1;
        }
        assert!(moved >= 1, "{krate}: no ExecStart");
        assert_eq!(
            dropin.matches("Exec").count(),
            moved * 2,
            "{krate}: drop-in has extra lines"
        );
        if let Some(ms) = d.get("maintainer-scripts") {
            assert!(dir.join(ms.as_str().unwrap()).is_dir());
        }
    }
}

#[test]
fn containerfile_copies_existing_files_and_runs_the_built_binary() {
    let text = std::fs::read_to_string(root().join("enrp-server/deploy/Containerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: build and runtime");
    assert!(froms[0].ends_with(" AS build"));
    let enrp = manifest("enrp-server");
    let mut copied_dirs = Vec::new();
    let mut runtime_bin = None;
    for l in lines.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = l.split_whitespace().skip(1).collect();
        if let Some(stage) = words[0].strip_prefix("--from=") {
            assert_eq!(stage, "build");
            if let Some(b) = words[1].strip_prefix("/src/target/release/") {
                assert!(bins(&enrp).contains(&b.to_string()), "no binary {b}");
                runtime_bin = Some(words[2].to_string());
            }
            continue;
        }
        let (srcs, _dest) = words.split_at(words.len() - 1);
        for s in srcs {
            assert!(root().join(s).exists(), "COPY source {s} missing");
            copied_dirs.push(s.to_string());
        }
    }
    // cargo needs every workspace member's manifest in the build stage.
    let ws: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for member in ws["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(
            copied_dirs
                .iter()
                .any(|d| member == d || member.starts_with(&format!("{d}/"))),
            "workspace member {member} not copied into the build stage"
        );
    }
    let build = lines
        .iter()
        .find(|l| l.starts_with("RUN cargo build"))
        .expect("build");
    assert!(
        build.contains("-p enrp-server --bin enrp-server"),
        "{build}"
    );
    let runtime_bin = runtime_bin.expect("binary copied from the build stage");
    assert!(
        text.contains(&format!("ENTRYPOINT [\"{runtime_bin}\"]")),
        "ENTRYPOINT does not run {runtime_bin}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("USER ") && !l.contains(" 0")),
        "runs as root"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "build context would carry target/"
    );
}

/// Where `cargo deb` is installed (scripts/test-all.sh installs it with `cargo install` and
/// sets `RSERPOOL_REQUIRE_CARGO_DEB`; README "Packages"): build the legacy-daemon package and
/// check its contents with `dpkg-deb --contents`.
#[test]
fn cargo_deb_package_contents_when_available() {
    let have = Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have || Command::new("dpkg-deb").arg("--version").output().is_err() {
        // scripts/test-all.sh installs cargo-deb and sets this, so CI never skips.
        assert!(
            std::env::var_os("RSERPOOL_REQUIRE_CARGO_DEB").is_none(),
            "RSERPOOL_REQUIRE_CARGO_DEB is set but cargo-deb or dpkg-deb is missing"
        );
        eprintln!("cargo-deb or dpkg-deb not installed: package build skipped");
        return;
    }
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "legacy-daemon"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(st.success());
    let release = root().join("target/release/legacy-daemon");
    let st = Command::new(&release)
        .args(["--generate-assets", "target/assets/legacy-daemon"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(st.success());
    let deb = stdout_of(
        Command::new(env!("CARGO"))
            .args(["deb", "-p", "legacy-daemon", "--no-build"])
            .current_dir(root()),
        "cargo deb",
    )
    .trim()
    .to_string();
    let out = Command::new("dpkg-deb")
        .args(["--contents", &deb])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for f in [
        "./usr/sbin/legacy-daemon",
        "./etc/legacy-daemon/legacy-daemon.toml",
        "./usr/share/man/man1/legacy-daemon.1",
        "./usr/share/bash-completion/completions/legacy-daemon",
        "./usr/lib/systemd/system/legacy-daemon.service.d/usr-bin.conf",
        "./usr/lib/sysusers.d/legacy-daemon.conf",
    ] {
        assert!(list.contains(f), "{f} not in {deb}:\n{list}");
    }
}

#[test]
fn long_option_parser() {
    let help = "Options:\n  -c, --config <PATH>  x\n      --once  y\n  -h, --help\n";
    assert_eq!(long_options(help), vec!["config", "help", "once"]);
}
